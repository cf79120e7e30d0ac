//! Slowloris: a client that connects and sends nothing, or trickles a request head that never
//! ends, is disconnected once the header read timeout runs out, while other clients are served.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use ema_examples::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_millis(300);

async fn server() -> std::io::Result<SocketAddr> {
    let (listener, _) = serve::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve::serve_with(
        listener,
        app,
        std::future::pending(),
        TIMEOUT,
    ));
    Ok(addr)
}

/// Waits for the server to close `stream`: true if it did within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read).await.is_ok()
}

#[tokio::test]
async fn silent_and_trickling_clients_are_disconnected() {
    let addr = server().await.unwrap();
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut trickling = TcpStream::connect(addr).await.unwrap();
    trickling
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-a: ")
        .await
        .unwrap();
    tokio::time::sleep(TIMEOUT / 3).await;
    trickling.write_all(b"b").await.unwrap();

    // Meanwhile a normal client is served.
    let mut normal = TcpStream::connect(addr).await.unwrap();
    normal
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    normal.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(closed_within(&mut trickling, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= TIMEOUT);
}

#[tokio::test]
async fn kept_alive_connections_get_the_timeout_between_requests_only() {
    let addr = server().await.unwrap();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // Two requests on one connection, each well within the timeout, the second sent after a
    // pause shorter than the timeout.
    for _ in 0..2 {
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(TIMEOUT / 3).await;
    }
    // Then idle past the timeout: closed.
    assert!(closed_within(&mut conn, Duration::from_secs(5)).await);
}
