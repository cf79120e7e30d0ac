//! Binding, announcing and serving.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use ema_jose::{Clock, SystemClock};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::{self, ConfigError, Listen};

/// Binds `addr` (port 0 allowed) and returns the listener with its `http://` URL.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// How long a client may take to send a request's head (request line and headers), on a new
/// connection and between requests on a kept-alive one; slower clients are disconnected. The
/// request timeout of [`ema_server::Limits`] only starts once the head is in, so without this
/// a client trickling headers (or sending nothing) would hold its connection forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over HTTP/1.1 until `shutdown` resolves, then lets open requests finish.
///
/// Accepted connections get `TCP_NODELAY`: a response written in several pieces (an MCP
/// Streamable HTTP reply is an SSE stream: headers, a priming event, the message, the end of
/// the stream) must not wait for the client's delayed ACK between pieces (Nagle's algorithm),
/// which costs about 40 ms per tool call on Linux. Clients get [`HEADER_READ_TIMEOUT`] to send
/// each request head.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, HEADER_READ_TIMEOUT).await
}

/// As [`serve`], with the header read timeout given.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Accept errors: a connection that went away before it was accepted is ignored; anything else
/// (out of file descriptors...) is logged and the loop backs off for a second.
async fn accept_error(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Resolves on Ctrl-C (or never, if the signal cannot be installed).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_level`, e.g. `info`).
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Reads `--config <file>` from the arguments, if given.
pub fn config_arg() -> Result<Option<std::path::PathBuf>, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(None),
        (Some("--config"), Some(path)) => Ok(Some(path.into())),
        (Some(other), _) => Err(format!(
            "unexpected argument `{other}`; usage: [--config <file.toml>]"
        )),
    }
}

/// The `main` of a reference server: reads `--config` (or takes `default()`), binds, builds the
/// router with `build(config, public_url, clock)`, prints the bound URL as the first stdout
/// line, and serves until Ctrl-C. Errors are printed as `<name>: <error>` with exit code 1.
pub async fn run_server<C: serde::de::DeserializeOwned>(
    name: &str,
    default: impl FnOnce() -> C,
    listen: impl Fn(&C) -> &Listen,
    build: impl FnOnce(&C, &str, Arc<dyn Clock>) -> Result<Router, ConfigError>,
) -> ExitCode {
    init_logging("info");
    let result: Result<(), Box<dyn std::error::Error>> = async {
        let cfg = match config_arg()? {
            Some(path) => config::load(&path)?,
            None => default(),
        };
        let (listener, bound) = bind(listen(&cfg).listen).await?;
        let public = listen(&cfg)
            .public_url
            .clone()
            .unwrap_or_else(|| bound.clone());
        let app = build(&cfg, &public, Arc::new(SystemClock))?;
        println!("{bound}");
        tracing::info!(server = name, public_url = %public, "listening");
        serve(listener, app, ctrl_c()).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
