//! Loopback helpers: servers on OS-chosen ports of 127.0.0.1, a clock the test moves by hand,
//! and response bodies that stall or stream without a length.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use ema_jose::{Clock, UnixTime};
use tokio::net::TcpListener;

/// 2026-01-01T00:00:00Z.
pub(crate) const NOW: u64 = 1_767_225_600;

/// A clock the test moves by hand.
#[derive(Debug)]
pub(crate) struct TestClock(AtomicU64);

/// A clock at `now` seconds.
pub(crate) fn test_clock(now: u64) -> TestClock {
    TestClock(AtomicU64::new(now))
}

impl TestClock {
    pub(crate) fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// Serves `router` on 127.0.0.1 at an OS-chosen port; returns the base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// A body that sends `first` and then stalls forever.
pub(crate) struct Stall {
    pub(crate) first: Option<Bytes>,
}

impl futures_core::Stream for Stall {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.first.take() {
            Some(b) => Poll::Ready(Some(Ok(b))),
            None => Poll::Pending,
        }
    }
}

/// A body of `chunks` chunks of `size` bytes with no `Content-Length`, counting what it sent.
pub(crate) struct Chunks {
    pub(crate) left: usize,
    pub(crate) size: usize,
    pub(crate) sent: Arc<AtomicUsize>,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.sent.fetch_add(self.size, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Bytes::from(vec![b' '; self.size]))))
    }
}

/// A response with a streamed body.
pub(crate) fn streamed(
    s: impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(s))
        .unwrap()
}
