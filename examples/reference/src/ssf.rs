//! The reference IdP as an OpenID Shared Signals transmitter (RV-3): its discovery document at
//! `/.well-known/ssf-configuration`, and RFC 8935 push streams to the configured receivers.
//! Disabling, enabling or purging a user at the admin route pushes the matching RISC event
//! (`account-disabled`, `account-enabled`, `account-purged`), signed with the IdP's key, with
//! `sub_id` `iss_sub` carrying the same `sub` the IdP puts in its ID-JAGs.
//!
//! Delivery retries a bounded number of times on network errors, 429 and 5xx; a refusal or a
//! last failure is logged (target `ema_examples::ssf`). The admin call waits for delivery at
//! most [`PUSH_WAIT`]; a slower push goes on in the background.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use ema_grant::ssf::{SECEVENT_CONTENT_TYPE, SECEVENT_TYP, event_type};
use ema_jose::{Clock, KeyRing, random_id};

use crate::config::ConfigError;

/// The discovery document's path (SSF §7.1, below the issuer's host).
pub const SSF_CONFIGURATION_PATH: &str = "/.well-known/ssf-configuration";

/// How long the admin call waits for the pushes of one change.
pub const PUSH_WAIT: Duration = Duration::from_secs(5);

/// Attempts per SET and stream (the first and two retries).
pub const PUSH_ATTEMPTS: u32 = 3;

/// The timeout of one delivery attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A push stream to one receiver.
#[derive(Clone)]
pub struct PushStream {
    /// The receiver's push endpoint.
    pub endpoint: String,
    /// The `Authorization` value the receiver gave us.
    pub authorization: String,
    /// The receiver's id, the SETs' `aud`.
    pub audience: String,
}

impl std::fmt::Debug for PushStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushStream")
            .field("endpoint", &self.endpoint)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// What happened to one stream's SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 202.
    Delivered,
    /// The receiver refused the SET (4xx other than 429), with its `err` code.
    Refused(String),
    /// Every attempt failed (network, 429, 5xx).
    Failed(String),
}

impl Delivery {
    /// `delivered`, `refused:<err>` or `failed`.
    pub fn name(&self) -> String {
        match self {
            Self::Delivered => "delivered".into(),
            Self::Refused(err) => format!("refused:{err}"),
            Self::Failed(_) => "failed".into(),
        }
    }
}

/// The IdP's transmitter. Cheap to clone.
#[derive(Clone)]
pub struct SsfTransmitter {
    issuer: String,
    keys: Arc<KeyRing>,
    streams: Arc<[PushStream]>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    retry_delay: Duration,
}

impl std::fmt::Debug for SsfTransmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsfTransmitter")
            .field("issuer", &self.issuer)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

/// The RISC event a user-status change pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEvent {
    /// The user was disabled.
    Disabled,
    /// The user was enabled again.
    Enabled,
    /// The user was purged.
    Purged,
}

impl AccountEvent {
    /// The event type URI.
    pub const fn uri(self) -> &'static str {
        match self {
            Self::Disabled => event_type::ACCOUNT_DISABLED,
            Self::Enabled => event_type::ACCOUNT_ENABLED,
            Self::Purged => event_type::ACCOUNT_PURGED,
        }
    }
}

impl SsfTransmitter {
    /// A transmitter for the IdP `issuer`, signing with `keys`, pushing to `streams`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when the HTTP client cannot be built.
    pub fn new(
        issuer: &str,
        keys: Arc<KeyRing>,
        streams: Vec<PushStream>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| ConfigError::Invalid(format!("ssf: HTTP client: {e}")))?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            keys,
            streams: Arc::from(streams),
            http,
            clock,
            retry_delay: Duration::from_millis(200),
        })
    }

    /// The streams.
    pub fn streams(&self) -> &[PushStream] {
        &self.streams
    }

    /// The discovery document (SSF §7.1): push delivery only.
    pub fn configuration(&self, jwks_uri: &str) -> serde_json::Value {
        serde_json::json!({
            "spec_version": "1_0",
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "delivery_methods_supported": ["urn:ietf:rfc:8935"],
            "default_subjects": "ALL",
        })
    }

    /// The router serving the discovery document.
    pub fn router(&self, jwks_uri: &str) -> Router {
        let doc = self.configuration(jwks_uri).to_string();
        Router::new().route(
            SSF_CONFIGURATION_PATH,
            get(move || {
                let doc = doc.clone();
                async move { ([("content-type", "application/json")], doc).into_response() }
            }),
        )
    }

    /// The signed SET of `event` for `subject`, addressed to `stream`.
    ///
    /// # Errors
    ///
    /// The signing error.
    pub fn set(
        &self,
        stream: &PushStream,
        subject: &str,
        event: AccountEvent,
    ) -> Result<String, ema_jose::SignError> {
        let now = self.clock.now().as_secs();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "jti": random_id()?,
            "iat": now,
            "aud": stream.audience,
            "sub_id": {"format": "iss_sub", "iss": self.issuer, "sub": subject},
            "events": {event.uri(): {"initiating_entity": "admin"}},
        });
        self.keys.active().sign_jwt(Some(SECEVENT_TYP), &claims)
    }

    /// Pushes `event` for `subject` to every stream, each with bounded retries; the outcome
    /// per stream endpoint.
    pub async fn push(&self, subject: &str, event: AccountEvent) -> Vec<(String, Delivery)> {
        let mut out = Vec::with_capacity(self.streams.len());
        for stream in self.streams.iter() {
            let delivery = match self.set(stream, subject, event) {
                Ok(set) => self.deliver(stream, set).await,
                Err(e) => Delivery::Failed(format!("signing: {e}")),
            };
            match &delivery {
                Delivery::Delivered => tracing::info!(
                    target: "ema_examples::ssf", endpoint = %stream.endpoint,
                    event = event.uri(), "SET delivered"
                ),
                other => tracing::warn!(
                    target: "ema_examples::ssf", endpoint = %stream.endpoint,
                    event = event.uri(), outcome = ?other, "SET not delivered"
                ),
            }
            out.push((stream.endpoint.clone(), delivery));
        }
        out
    }

    async fn deliver(&self, stream: &PushStream, set: String) -> Delivery {
        let mut last = String::new();
        for attempt in 0..PUSH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.retry_delay * 2u32.pow(attempt - 1)).await;
            }
            let sent = self
                .http
                .post(&stream.endpoint)
                .header("content-type", SECEVENT_CONTENT_TYPE)
                .header("accept", "application/json")
                .header("authorization", &stream.authorization)
                .body(set.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().as_u16() == 202 => return Delivery::Delivered,
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    last = format!("HTTP {}", r.status().as_u16());
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    let err = body
                        .get("err")
                        .and_then(serde_json::Value::as_str)
                        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
                    return Delivery::Refused(err);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Delivery::Failed(last)
    }
}
