//! A private three-master Redis Cluster per test: three `redis-server --cluster-enabled yes`
//! on loopback ports the OS chose, each with its own directory and cluster config file under
//! one temporary directory, no persistence; joined by `redis-cli --cluster create` with no
//! replicas; ready once every node's `CLUSTER INFO` says `cluster_state:ok` (polled). Every
//! process is killed and the directory removed on drop, also when the test fails (or start-up
//! does half-way: the processes are owned from the moment they are spawned).
//!
//! `redis-server` and `redis-cli` must be on `PATH` (`.ci/run` installs Debian's package,
//! which has both, when they are missing); without them these tests fail, they are not skipped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How many masters the cluster has.
pub(crate) const MASTERS: usize = 3;

#[derive(Debug)]
pub(crate) struct RedisCluster {
    dir: PathBuf,
    nodes: Vec<(u16, Child)>,
}

impl RedisCluster {
    /// Starts three nodes, creates the cluster and waits until every node reports it ok.
    pub(crate) fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ema-redis-cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's temporary directory");
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..MASTERS {
            cluster.spawn_node();
        }
        let addresses: Vec<String> = cluster.ports().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `redis-cli` ({e}): the cluster tests need it"));
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_ok();
        cluster
    }

    /// The nodes' ports.
    pub(crate) fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes.iter().map(|(port, _)| *port)
    }

    /// The URLs the clients start from: every node.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.ports()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// Sends one command to the node on `port` over a fresh connection and returns the raw
    /// reply (no redirection: the node answers for itself).
    pub(crate) fn command(&self, port: u16, args: &[&str]) -> String {
        command(port, args).unwrap_or_else(|e| panic!("node {port}: {e}"))
    }

    /// The number of keys on each master, in port order.
    pub(crate) fn key_counts(&self) -> Vec<u64> {
        self.ports()
            .map(|p| {
                let reply = self.command(p, &["DBSIZE"]);
                reply
                    .trim()
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("DBSIZE answered {reply:?}"))
            })
            .collect()
    }

    /// Starts one node on a port the OS chose (and a cluster bus port likewise), retrying with
    /// fresh ports if another process took one in between.
    fn spawn_node(&mut self) {
        for _ in 0..5 {
            let (port, bus) = (free_port(), free_port());
            let node_dir = self.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node directory");
            let mut child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .arg("--cluster-config-file")
                .arg(node_dir.join("nodes.conf"))
                .args(["--cluster-node-timeout", "5000"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run `redis-server` ({e}): the Redis tests need it on PATH \
                         (Debian: apt-get install -y redis-server)"
                    )
                });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if command(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG")) {
                    self.nodes.push((port, child));
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    // Most likely a port taken in between: try others.
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server on {port} did not answer PING within 10 s"
                );
                // Polling, not synchronisation: the loop ends on the first PONG.
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
        panic!("no redis-server cluster node started after five attempts");
    }

    /// Polls every node's `CLUSTER INFO` until each says `cluster_state:ok` (at most 20 s).
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.ports().all(|p| {
                command(p, &["CLUSTER", "INFO"]).is_ok_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One command in RESP over a fresh connection; the raw reply (one read, enough for the small
/// answers the tests ask for).
fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(out.as_bytes())?;
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
