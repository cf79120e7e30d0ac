//! A private `redis-server` per test: its own temporary directory, no TCP port (`--port 0`),
//! a Unix socket, no persistence; ready once it answers `PING` on the socket; killed and its
//! directory removed on drop. [`RedisServer::stop`] and [`RedisServer::start_again`] take it
//! down and bring it back on the same socket, for the fail-closed and recovery tests.
//!
//! `redis-server` must be on `PATH` (`.ci/run` installs Debian's package when it is missing);
//! without it these tests fail with a message saying so, they are not skipped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
pub(crate) struct RedisServer {
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh server and waits until it answers `PING`.
    pub(crate) fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ema-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the server's temporary directory");
        let mut server = Self { dir, child: None };
        server.start_again();
        server
    }

    /// The socket path.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL the stores connect to.
    pub(crate) fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills the server (SIGKILL: no goodbye to connected clients) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// (Re)starts the server on the same socket and waits until it answers `PING`.
    pub(crate) fn start_again(&mut self) {
        self.stop();
        let socket = self.socket();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `redis-server` ({e}): the Redis tests need it on PATH \
                     (Debian: apt-get install -y redis-server; .ci/run installs it and runs these ignored tests with --ignored)"
                )
            });
        self.child = Some(child);
        wait_for_pong(&socket, self.child.as_mut().expect("just started"));
    }

    /// Sends one command in RESP to the server over a fresh connection and returns the raw
    /// reply, for test set-up and inspection (`CLIENT KILL`, `TTL`, `DBSIZE`).
    pub(crate) fn command(&self, args: &[&str]) -> String {
        let mut stream = UnixStream::connect(self.socket()).expect("connect to redis-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(out.as_bytes()).expect("send");
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).expect("reply");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Polls the socket until `PING` gets `+PONG` (at most 10 s, or until the process exits).
fn wait_for_pong(socket: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut stream) = UnixStream::connect(socket) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited before answering PING: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not answer PING on {} within 10 s",
            socket.display()
        );
        // Polling, not synchronisation: the loop ends on the first PONG.
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
