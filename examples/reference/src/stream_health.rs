//! The authorization server's side of SSF stream health (RV-26): the HTTP around
//! [`ema_grant::ssf_health::StreamHealth`].
//!
//! [`VerificationDriver::run_once`] reads each transmitter's discovery document (its
//! `verification_endpoint` and `configuration_endpoint`) and stream configuration (its
//! `min_verification_interval`) until it has them, ticks the state machine, `POST`s the
//! verification requests it asks for (`{"stream_id", "state"}` with the stream's receiver
//! credential), and logs and audits every health change (target `ema_server::ssf_health`). The
//! verification SET itself arrives on the push endpoint, where the receiver matches its
//! `state`. [`VerificationDriver::spawn`] runs it every few seconds.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ema_grant::ssf_health::{StreamHealth, Tick};
use ema_jose::Clock;
use ema_server::audit::AuditLog;

use crate::config::ConfigError;

/// How often the spawned driver ticks.
pub const TICK_EVERY: Duration = Duration::from_secs(5);

/// The timeout of one HTTP call to a transmitter.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach one transmitter.
#[derive(Clone)]
pub struct TransmitterEndpoint {
    /// The transmitter's issuer.
    pub issuer: String,
    /// Its discovery document's URL.
    pub configuration_url: String,
    /// The stream's id there.
    pub stream_id: String,
    /// The `Authorization` value this receiver presents there.
    pub authorization: String,
}

impl std::fmt::Debug for TransmitterEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransmitterEndpoint")
            .field("issuer", &self.issuer)
            .field("configuration_url", &self.configuration_url)
            .field("stream_id", &self.stream_id)
            .finish_non_exhaustive()
    }
}

/// The discovery document's URL for `issuer`: `/.well-known/ssf-configuration` inserted after
/// the host (SSF §7.2, as RFC 8414 does).
///
/// # Errors
///
/// [`ConfigError::Invalid`] for an issuer that is not an `http(s)` URL.
pub fn discovery_url(issuer: &str) -> Result<String, ConfigError> {
    let mut url = url::Url::parse(issuer)
        .map_err(|e| ConfigError::Invalid(format!("SSF issuer `{issuer}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid(format!(
            "SSF issuer `{issuer}`: use an http or https URL"
        )));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{}{path}", crate::ssf::SSF_CONFIGURATION_PATH));
    url.set_query(None);
    Ok(url.to_string())
}

#[derive(Debug, Clone, Default)]
struct Resolved {
    verification_endpoint: Option<String>,
}

/// Sends the verification requests of a [`StreamHealth`] and reports its changes. Cheap to
/// clone.
#[derive(Clone)]
pub struct VerificationDriver {
    health: StreamHealth,
    endpoints: Arc<[TransmitterEndpoint]>,
    resolved: Arc<Mutex<std::collections::HashMap<String, Resolved>>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl std::fmt::Debug for VerificationDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationDriver")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl VerificationDriver {
    /// A driver for `health`, reaching the transmitters at `endpoints`, logging changes to
    /// `audit`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the HTTP client cannot be built.
    pub fn new(
        health: StreamHealth,
        endpoints: Vec<TransmitterEndpoint>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::Invalid(format!("ssf: HTTP client: {e}")))?;
        Ok(Self {
            health,
            endpoints: Arc::from(endpoints),
            resolved: Arc::default(),
            http,
            clock,
            audit,
        })
    }

    /// The state machine.
    pub fn health(&self) -> &StreamHealth {
        &self.health
    }

    /// One round: discovery where still missing, a tick, the requests it asks for, the
    /// changes logged and audited. Returns the tick (requests, unanswered ones, changes).
    pub async fn run_once(&self) -> Tick {
        for endpoint in self.endpoints.iter() {
            let known = self
                .resolved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&endpoint.issuer)
                .is_some_and(|r| r.verification_endpoint.is_some());
            if !known {
                self.discover(endpoint).await;
            }
        }
        let tick = self.health.tick(self.clock.now());
        for issuer in &tick.unanswered {
            tracing::warn!(target: "ema_server::ssf_health", transmitter = %issuer, "no verification event answered the request");
        }
        self.send(&tick.requests).await;
        // The verification SET usually arrived while the request was open: report it now.
        let after = self.health.tick(self.clock.now());
        self.send(&after.requests).await;
        let mut tick = tick;
        tick.requests.extend(after.requests);
        tick.unanswered.extend(after.unanswered);
        tick.changes.extend(after.changes);
        for change in &tick.changes {
            if let Err(e) = ema_server::stream_health_changed(&self.audit, change) {
                tracing::error!(target: "ema_audit", error = %e, "stream health change not recorded");
            }
        }
        tick
    }

    async fn send(&self, requests: &[ema_grant::ssf_health::VerificationRequest]) {
        for request in requests {
            let Some(endpoint) = self
                .endpoints
                .iter()
                .find(|e| e.issuer == request.transmitter)
            else {
                // Tracked without an endpoint: nothing to ask.
                self.health
                    .request_failed(&request.transmitter, &request.state, self.clock.now());
                continue;
            };
            if let Err(why) = self.request(endpoint, &request.state).await {
                tracing::warn!(target: "ema_server::ssf_health", transmitter = %endpoint.issuer, error = %why, "verification request failed");
                self.health
                    .request_failed(&endpoint.issuer, &request.state, self.clock.now());
            }
        }
    }

    async fn discover(&self, endpoint: &TransmitterEndpoint) {
        let doc = match self.get_json(&endpoint.configuration_url, None).await {
            Ok(doc) => doc,
            Err(why) => {
                tracing::warn!(target: "ema_server::ssf_health", transmitter = %endpoint.issuer, error = %why, "SSF discovery failed");
                return;
            }
        };
        if doc.get("issuer").and_then(serde_json::Value::as_str) != Some(endpoint.issuer.as_str()) {
            tracing::warn!(target: "ema_server::ssf_health", transmitter = %endpoint.issuer, "SSF discovery document names another issuer");
            return;
        }
        let verification_endpoint = doc
            .get("verification_endpoint")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        if let Some(config) = doc
            .get("configuration_endpoint")
            .and_then(serde_json::Value::as_str)
        {
            let Ok(mut url) = url::Url::parse(config) else {
                return;
            };
            url.query_pairs_mut()
                .append_pair("stream_id", &endpoint.stream_id);
            match self
                .get_json(url.as_str(), Some(&endpoint.authorization))
                .await
            {
                Ok(stream) => {
                    if let Some(min) = stream
                        .get("min_verification_interval")
                        .and_then(serde_json::Value::as_u64)
                    {
                        self.health.set_min_interval(&endpoint.issuer, min);
                    }
                }
                Err(why) => {
                    tracing::warn!(target: "ema_server::ssf_health", transmitter = %endpoint.issuer, error = %why, "reading the stream configuration failed");
                    return;
                }
            }
        }
        self.resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                endpoint.issuer.clone(),
                Resolved {
                    verification_endpoint,
                },
            );
    }

    async fn get_json(
        &self,
        url: &str,
        authorization: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let mut req = self.http.get(url).header("accept", "application/json");
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        resp.json().await.map_err(|e| e.to_string())
    }

    async fn request(&self, endpoint: &TransmitterEndpoint, state: &str) -> Result<(), String> {
        let url = self
            .resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&endpoint.issuer)
            .and_then(|r| r.verification_endpoint.clone())
            .ok_or_else(|| "no verification endpoint known".to_owned())?;
        let resp = self
            .http
            .post(url)
            .header("authorization", &endpoint.authorization)
            .json(&serde_json::json!({"stream_id": endpoint.stream_id, "state": state}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
    }

    /// Runs [`run_once`](Self::run_once) every [`TICK_EVERY`] on the current Tokio runtime,
    /// until the handle is aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                self.run_once().await;
            }
        })
    }
}
