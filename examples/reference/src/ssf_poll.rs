//! The authorization server's RFC 8936 poll client over HTTP (RV-27), for a transmitter that
//! cannot push: the HTTP around [`ema_grant::ssf_poll::SsfPoller`].
//!
//! [`PollDriver::run_once`] `POST`s one poll request (acknowledgements and `setErrs` of the
//! last answer included) with the stream's receiver credential, validates and applies every
//! SET of the answer exactly as a pushed one, and records each on the audit trail (source
//! `ssf-poll`); a SET whose record fails is not acknowledged, so it comes again.
//! [`PollDriver::spawn`] long-polls in a loop.

use std::sync::Arc;
use std::time::Duration;

use ema_grant::ssf_poll::{Polled, SsfPoller};
use ema_jose::Clock;
use ema_server::audit::AuditLog;

use crate::config::ConfigError;

/// The HTTP timeout of one poll: above the longest long-poll wait (60 s).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(75);

/// The pause after a failed poll, or an empty answer to a long poll that came within a
/// second.
pub const POLL_BACKOFF: Duration = Duration::from_secs(5);

/// Polls one transmitter. Cheap to clone.
#[derive(Clone)]
pub struct PollDriver {
    poller: SsfPoller,
    url: String,
    authorization: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl std::fmt::Debug for PollDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollDriver")
            .field("issuer", &self.poller.issuer())
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PollDriver {
    /// A driver polling `url` with the `Authorization` value `authorization` for `poller`,
    /// recording SETs in `audit`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the HTTP client cannot be built.
    pub fn new(
        poller: SsfPoller,
        url: &str,
        authorization: &str,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(POLL_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::Invalid(format!("ssf: HTTP client: {e}")))?;
        Ok(Self {
            poller,
            url: url.to_owned(),
            authorization: authorization.to_owned(),
            http,
            clock,
            audit,
        })
    }

    /// The poller.
    pub fn poller(&self) -> &SsfPoller {
        &self.poller
    }

    /// One poll: the request, the answer's SETs applied and recorded.
    ///
    /// # Errors
    ///
    /// A description of the failure (network, a status other than 200, a malformed answer);
    /// the acknowledgements then go with the next poll.
    pub async fn run_once(&self) -> Result<Polled, String> {
        let body = self.poller.request();
        let sent = self
            .http
            .post(&self.url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) if r.status().as_u16() == 200 => r,
            Ok(r) => {
                self.poller.request_failed();
                return Err(format!("HTTP {}", r.status().as_u16()));
            }
            Err(e) => {
                self.poller.request_failed();
                return Err(e.to_string());
            }
        };
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.poller.request_failed();
                return Err(e.to_string());
            }
        };
        let polled = self
            .poller
            .response(&bytes, self.clock.now())
            .await
            .map_err(|e| e.to_string())?;
        for receipt in &polled.receipts {
            let outcome = receipt.outcome_name();
            tracing::info!(
                target: "ema_server::authorization_server",
                transmitter = %receipt.transmitter, jti = receipt.jti.as_deref().unwrap_or(""),
                event_type = receipt.event_type.as_deref().unwrap_or(""), %outcome,
                "security event polled"
            );
            if let Err(e) = ema_server::security_event_recorded(&self.audit, "ssf-poll", receipt) {
                tracing::error!(target: "ema_audit", error = %e, "polled security event not recorded; it is not acknowledged");
                if let (Ok(_), Some(jti)) = (&receipt.outcome, &receipt.jti) {
                    self.poller.retract(jti).await;
                }
            }
        }
        Ok(polled)
    }

    /// Long-polls in a loop on the current Tokio runtime until the handle is aborted: again at
    /// once while the transmitter has more, after [`POLL_BACKOFF`] after a failure or an empty
    /// answer.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                match self.run_once().await {
                    Ok(polled) if polled.more_available || !polled.receipts.is_empty() => {}
                    // A long poll that waited: poll again at once.
                    Ok(_) if started.elapsed() >= Duration::from_secs(1) => {}
                    Ok(_) => tokio::time::sleep(POLL_BACKOFF).await,
                    Err(why) => {
                        tracing::warn!(target: "ema_server::authorization_server", transmitter = %self.poller.issuer(), error = %why, "SSF poll failed");
                        tokio::time::sleep(POLL_BACKOFF).await;
                    }
                }
            }
        })
    }
}
