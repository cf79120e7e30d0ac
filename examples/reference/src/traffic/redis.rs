//! A private `redis-server` for the load runs that share state between instances: started on a
//! loopback port the OS chose (a listener bound to port 0 and closed just before the server
//! takes the port over), in a temporary directory of its own, without persistence; stopped and
//! its directory removed when dropped. `redis-server` must be on `PATH`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisProcessError {
    /// Choosing a port, the temporary directory, or running the program.
    #[error("redis-server: {0} (Debian: apt-get install -y redis-server)")]
    Io(#[from] std::io::Error),
    /// The server exited or did not answer `PING` in time.
    #[error("redis-server: {0}")]
    NotReady(String),
}

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisProcess {
    addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl RedisProcess {
    /// Starts a server on `127.0.0.1` and waits (at most 10 s) until it answers `PING`.
    pub fn start() -> Result<Self, RedisProcessError> {
        let addr = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?;
        let dir = std::env::temp_dir().join(format!(
            "ema-load-redis-{}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir)?;
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        let mut server = Self { addr, dir, child };
        server.wait_ready()?;
        Ok(server)
    }

    /// The URL clients connect with (`redis://127.0.0.1:port`).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// CPU time (user + system) the server has used so far, from `/proc/<pid>/stat` (Linux
    /// only; clock ticks taken as the usual 100 per second): what Redis costs beside the
    /// servers' own threads when it shares their cores.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let rest = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: utime and stime are fields 14 and 15 of the file.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
    }

    fn wait_ready(&mut self) -> Result<(), RedisProcessError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RedisProcessError::NotReady(format!(
                    "exited before answering PING ({status}); port {} taken?",
                    self.addr.port()
                )));
            }
            if Instant::now() >= deadline {
                return Err(RedisProcessError::NotReady(format!(
                    "no answer to PING on {} within 10 s",
                    self.addr
                )));
            }
            // Polling for readiness: the loop ends on the first PONG.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
