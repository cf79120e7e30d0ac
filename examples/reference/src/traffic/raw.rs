//! Raw HTTP/1.1 over TCP, for traffic no well-behaved client would send: the request is bytes
//! written in steps (with pauses, or an abort), and the response is read and framed by hand
//! (`Content-Length`, chunked, or until close) so a keep-alive connection can be reused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One step of a scripted request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes (shared: a catalog is cloned into every connection's task).
    Send(Bytes),
    /// Wait before the next step (the server sees a stalled client).
    Pause(Duration),
    /// Close the connection without finishing the request.
    Abort,
}

impl Step {
    /// A [`Step::Send`] of `bytes`.
    pub fn send(bytes: impl Into<Bytes>) -> Self {
        Self::Send(bytes.into())
    }
}

/// What came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A complete response with this status.
    Status(u16),
    /// The server closed the connection before any response byte.
    Closed,
    /// The connection was reset, or closed in the middle of a response.
    Reset,
    /// Nothing complete arrived within the limit; the connection was still open.
    TimedOut,
    /// The client aborted as scripted, before any response.
    Aborted,
}

impl Outcome {
    /// A short label for counting.
    pub fn label(self) -> String {
        match self {
            Self::Status(s) => s.to_string(),
            Self::Closed => "closed".into(),
            Self::Reset => "reset".into(),
            Self::TimedOut => "timeout".into(),
            Self::Aborted => "aborted".into(),
        }
    }
}

/// The result of one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// What came back.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// A connection that reconnects when the previous exchange left it unusable.
#[derive(Debug)]
pub struct RawConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The largest response body read (bodies of bad requests are small).
const MAX_BODY: usize = 4 * 1024 * 1024;

struct Head {
    status: u16,
    len: usize,
    chunked: bool,
    content_length: Option<usize>,
    close: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(buf: &[u8]) -> Option<Result<Head, ()>> {
    let end = find(buf, b"\r\n\r\n")?;
    let text = match buf.get(..end).map(std::str::from_utf8) {
        Some(Ok(t)) => t,
        _ => return Some(Err(())),
    };
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
        return Some(Err(()));
    };
    if !version.starts_with("HTTP/1.") {
        return Some(Err(()));
    }
    let mut head = Head {
        status,
        len: end + 4,
        chunked: false,
        content_length: None,
        close: version == "HTTP/1.0",
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Some(Err(()));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
    Some(Ok(head))
}

enum Read {
    /// A response: its status and whether the connection can carry another request.
    Done(u16, bool),
    Closed,
    Broken,
}

/// Reads until `buf` holds at least `n` bytes; false on EOF or error.
async fn fill(r: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        match r.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}

async fn read_response(r: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> Read {
    loop {
        let head = loop {
            match parse_head(buf) {
                Some(Ok(head)) => break head,
                Some(Err(())) => return Read::Broken,
                None if buf.len() > MAX_HEAD => return Read::Broken,
                None => match r.read_buf(buf).await {
                    Ok(0) | Err(_) if buf.is_empty() => return Read::Closed,
                    Ok(0) | Err(_) => return Read::Broken,
                    Ok(_) => {}
                },
            }
        };
        buf.drain(..head.len);
        // Informational responses (100 Continue) come before the real one.
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        let no_body = head.status == 204 || head.status == 304;
        if no_body {
            return Read::Done(head.status, !head.close);
        }
        if head.chunked {
            let mut total = 0usize;
            loop {
                let line_end = loop {
                    if let Some(i) = find(buf, b"\r\n") {
                        break i;
                    }
                    if buf.len() > MAX_HEAD || !fill(r, buf, buf.len() + 1).await {
                        return Read::Broken;
                    }
                };
                let size = buf
                    .get(..line_end)
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .and_then(|l| l.split(';').next())
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                let Some(size) = size else {
                    return Read::Broken;
                };
                buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let end = loop {
                            if let Some(i) = find(buf, b"\r\n") {
                                break i;
                            }
                            if !fill(r, buf, buf.len() + 1).await {
                                return Read::Broken;
                            }
                        };
                        buf.drain(..end + 2);
                        if end == 0 {
                            return Read::Done(head.status, !head.close);
                        }
                    }
                }
                total += size;
                if total > MAX_BODY || !fill(r, buf, size + 2).await {
                    return Read::Broken;
                }
                buf.drain(..size + 2);
            }
        }
        if let Some(n) = head.content_length {
            if n > MAX_BODY || !fill(r, buf, n).await {
                return Read::Broken;
            }
            buf.drain(..n);
            return Read::Done(head.status, !head.close);
        }
        // Delimited by close.
        loop {
            buf.clear();
            match r.read_buf(buf).await {
                Ok(0) => return Read::Done(head.status, false),
                Ok(_) => {}
                Err(_) => return Read::Broken,
            }
        }
    }
}

impl RawConn {
    /// A connection to `addr`, opened at the first exchange.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// Runs `steps` and reads one response, giving up after `limit`. Connecting failures are
    /// errors; everything after is an [`Outcome`].
    ///
    /// Requests with pauses or an abort always get a fresh connection. A kept-alive connection
    /// the server closed after its previous response (as servers do when a request body was
    /// left unread) is detected the usual way: no response byte on a reused connection means
    /// the request is sent again on a fresh one.
    pub async fn exchange(&mut self, steps: &[Step], limit: Duration) -> std::io::Result<Exchange> {
        let started = Instant::now();
        if steps
            .iter()
            .any(|s| matches!(s, Step::Pause(_) | Step::Abort))
        {
            self.stream = None;
        }
        loop {
            let reused = self.stream.is_some();
            let outcome = self.attempt(steps, limit).await?;
            if reused && outcome == Outcome::Closed {
                continue;
            }
            return Ok(Exchange {
                outcome,
                elapsed: started.elapsed(),
            });
        }
    }

    /// The kept-alive connection, or a new one (with `TCP_NODELAY` and an empty buffer).
    async fn take_or_connect(&mut self) -> std::io::Result<TcpStream> {
        if let Some(stream) = self.stream.take() {
            return Ok(stream);
        }
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        self.buf.clear();
        Ok(stream)
    }

    /// Writes one complete request and reads its response, on a kept-alive connection when
    /// there is one: the load generator's path, with no timers and no second task, so that the
    /// client costs the server's cores as little as possible. A connection the server closed is
    /// reopened once, as in [`RawConn::exchange`].
    pub async fn request(&mut self, bytes: &[u8]) -> std::io::Result<Outcome> {
        loop {
            let reused = self.stream.is_some();
            let mut stream = self.take_or_connect().await?;
            if stream.write_all(bytes).await.is_err() && !reused {
                return Ok(Outcome::Reset);
            }
            let outcome = match read_response(&mut stream, &mut self.buf).await {
                Read::Done(status, keep) => {
                    if keep {
                        self.stream = Some(stream);
                    }
                    Outcome::Status(status)
                }
                Read::Closed if reused => continue,
                Read::Closed => Outcome::Closed,
                Read::Broken => Outcome::Reset,
            };
            if self.stream.is_none() {
                self.buf.clear();
            }
            return Ok(outcome);
        }
    }

    async fn attempt(&mut self, steps: &[Step], limit: Duration) -> std::io::Result<Outcome> {
        let mut stream = self.take_or_connect().await?;
        let (outcome, reusable) = {
            let (mut r, mut w) = stream.split();
            let writer = async {
                for step in steps {
                    match step {
                        Step::Send(bytes) => w.write_all(bytes).await?,
                        Step::Pause(d) => tokio::time::sleep(*d).await,
                        Step::Abort => return Ok::<bool, std::io::Error>(true),
                    }
                }
                Ok(false)
            };
            let reader = read_response(&mut r, &mut self.buf);
            tokio::pin!(writer, reader);
            let deadline = tokio::time::sleep(limit);
            tokio::pin!(deadline);
            let mut written = false;
            loop {
                tokio::select! {
                    w = &mut writer, if !written => {
                        written = true;
                        match w {
                            Ok(true) => break (Outcome::Aborted, false),
                            Ok(false) => {}
                            // The server may answer and close before reading everything: keep
                            // reading, the response decides.
                            Err(_) => {}
                        }
                    }
                    read = &mut reader => break match read {
                        // A response that arrived before the request was fully written
                        // leaves the connection unusable.
                        Read::Done(status, keep) => (Outcome::Status(status), keep && written),
                        Read::Closed => (Outcome::Closed, false),
                        Read::Broken => (Outcome::Reset, false),
                    },
                    () = &mut deadline => break (Outcome::TimedOut, false),
                }
            }
        };
        if reusable {
            self.stream = Some(stream);
        } else {
            self.buf.clear();
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_reuses_the_connection_and_reopens_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            // First connection: two requests answered, then closed by the server.
            let (mut s, _) = listener.accept().await.unwrap();
            accepted += 1;
            let mut buf = [0u8; 1024];
            for status in [200, 401] {
                let _ = s.read(&mut buf).await.unwrap();
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                s.write_all(reply.as_bytes()).await.unwrap();
            }
            drop(s);
            // Second connection: the reopened one.
            let (mut s, _) = listener.accept().await.unwrap();
            accepted += 1;
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            accepted
        });
        let mut c = RawConn::new(addr);
        let req = b"POST /token HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(c.request(req).await.unwrap(), Outcome::Status(200));
        assert_eq!(c.request(req).await.unwrap(), Outcome::Status(401));
        assert_eq!(c.request(req).await.unwrap(), Outcome::Status(200));
        assert_eq!(server.await.unwrap(), 2, "one reconnection, no more");
    }

    #[tokio::test]
    async fn frames_length_chunked_and_close_delimited_bodies() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let replies: [&[u8]; 3] = [
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\n\r\nbye",
            ];
            for reply in replies {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(reply).await.unwrap();
            }
        });
        let mut c = RawConn::new(addr);
        let req = || [Step::send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec())];
        for expected in [400, 200, 413] {
            let ex = c.exchange(&req(), Duration::from_secs(5)).await.unwrap();
            assert_eq!(ex.outcome, Outcome::Status(expected));
        }
    }
}
