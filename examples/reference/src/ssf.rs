//! The reference IdP as an OpenID Shared Signals transmitter (RV-3): its discovery document at
//! `/.well-known/ssf-configuration`, and RFC 8935 push streams to the configured receivers.
//! Disabling, enabling or purging a user at the admin route pushes the matching RISC event
//! (`account-disabled`, `account-enabled`, `account-purged`), signed with the IdP's key, with
//! `sub_id` `iss_sub` carrying the same `sub` the IdP puts in its ID-JAGs.
//!
//! Delivery retries a bounded number of times on network errors, 429 and 5xx; a refusal or a
//! last failure is logged (target `ema_examples::ssf`). The admin call waits for delivery at
//! most [`PUSH_WAIT`]; a slower push goes on in the background.
//!
//! Stream health (RV-26): a receiver holding a stream's management credential asks for
//! verification at [`SSF_VERIFICATION_PATH`] (SSF §8.1.4.2, `{"stream_id", "state"}`; more
//! often than the stream's `min_verification_interval` is answered 429) and gets the
//! verification SET echoing its `state` pushed before the `204`; it reads the stream's
//! configuration, `min_verification_interval` included, at [`SSF_STREAM_PATH`]. The admin
//! route pauses, disables or enables a stream ([`SsfTransmitter::set_status`]), pushing
//! `stream-updated`; a stream that is not enabled gets no other events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ema_grant::ssf::{SECEVENT_CONTENT_TYPE, SECEVENT_TYP, event_type};
use ema_grant::ssf_health::StreamStatus;
use ema_jose::{Clock, KeyRing, UnixTime, random_id};

use crate::config::ConfigError;

/// The discovery document's path (SSF §7.1, below the issuer's host).
pub const SSF_CONFIGURATION_PATH: &str = "/.well-known/ssf-configuration";

/// The verification endpoint's path (SSF §8.1.4.2).
pub const SSF_VERIFICATION_PATH: &str = "/ssf/verify";

/// The stream configuration endpoint's path (SSF §8.1.1; `GET ?stream_id=`).
pub const SSF_STREAM_PATH: &str = "/ssf/stream";

/// The default `min_verification_interval` of a stream, in seconds.
pub const DEFAULT_MIN_VERIFICATION_INTERVAL: u64 = 60;

/// The RFC 8936 poll endpoint's path (RV-27).
pub const SSF_POLL_PATH: &str = "/ssf/poll";

/// How long a long poll waits for a SET by default.
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(20);

/// The most SETs one poll stream keeps unacknowledged; past it the oldest is dropped (logged).
pub const POLL_QUEUE_CAPACITY: usize = 10_000;

/// The most SETs one poll answer carries.
pub const MAX_POLL_EVENTS: usize = 1_000;

/// How a stream's SETs reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDelivery {
    /// RFC 8935: the IdP POSTs each SET to the receiver's endpoint.
    Push,
    /// RFC 8936: the receiver polls [`SSF_POLL_PATH`] with its receiver credential; SETs wait in
    /// a queue until acknowledged (long poll up to the wait given).
    Poll(Duration),
}

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
    /// The stream's id (`sub_id` of its verification and `stream-updated` events).
    pub stream_id: String,
    /// The `Authorization` value the receiver presents at the verification and configuration
    /// endpoints; `None`: it cannot call them.
    pub receiver_authorization: Option<String>,
    /// The least seconds between two verification requests (SSF §8.1.1).
    pub min_verification_interval: u64,
    /// Push or poll.
    pub delivery: StreamDelivery,
}

impl std::fmt::Debug for PushStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushStream")
            .field("endpoint", &self.endpoint)
            .field("audience", &self.audience)
            .field("stream_id", &self.stream_id)
            .field("min_verification_interval", &self.min_verification_interval)
            .field("delivery", &self.delivery)
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
    /// Not sent: the stream is paused or disabled.
    Skipped(StreamStatus),
    /// Queued for the receiver's next poll (RFC 8936).
    Queued,
}

impl Delivery {
    /// `delivered`, `refused:<err>` or `failed`.
    pub fn name(&self) -> String {
        match self {
            Self::Delivered => "delivered".into(),
            Self::Refused(err) => format!("refused:{err}"),
            Self::Failed(_) => "failed".into(),
            Self::Skipped(status) => format!("skipped:{}", status.as_str()),
            Self::Queued => "queued".into(),
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
    /// Per stream id: its status and its last verification request.
    state: Arc<Mutex<HashMap<String, StreamState>>>,
    /// Per poll stream id: the SETs not yet acknowledged, `(jti, SET)`, oldest first.
    queues: Arc<Mutex<HashMap<String, PollQueue>>>,
    /// Wakes long polls when a SET is queued.
    queued: Arc<tokio::sync::Notify>,
}

/// The SETs of one poll stream not yet acknowledged, `(jti, SET)`, oldest first.
type PollQueue = std::collections::VecDeque<(String, String)>;

/// What a poll request got (RFC 8936 §2.4).
#[derive(Debug, Clone, PartialEq)]
pub enum PollAnswer {
    /// 200 with `{"sets", "moreAvailable"}`.
    Sets(serde_json::Value),
    /// 401: the caller holds no stream's credential.
    Unauthenticated,
    /// 400: the body is not an RFC 8936 poll request.
    BadRequest,
    /// 404: the caller's stream is not a poll stream.
    NotFound,
}

#[derive(Debug, Clone, Copy)]
struct StreamState {
    status: StreamStatus,
    last_verification: Option<UnixTime>,
}

/// What a verification request got (SSF §8.1.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyAnswer {
    /// 204: the verification SET was pushed (or, for a stream not enabled, held back).
    Accepted(Option<Delivery>),
    /// 401: the caller holds no stream's credential.
    Unauthenticated,
    /// 400: the body is not `{"stream_id", "state"?}`.
    BadRequest,
    /// 404: not the caller's stream.
    NotFound,
    /// 429: sooner than `min_verification_interval` after the last, with the seconds left.
    TooSoon(u64),
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
            state: Arc::default(),
            queues: Arc::default(),
            queued: Arc::default(),
        })
    }

    /// Sends `set` on `stream`: POSTed for a push stream, queued for a poll stream.
    async fn send(&self, stream: &PushStream, set: (String, String)) -> Delivery {
        let (jti, set) = set;
        match stream.delivery {
            StreamDelivery::Push => self.deliver(stream, set).await,
            StreamDelivery::Poll(_) => {
                {
                    let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                    let queue = queues.entry(stream.stream_id.clone()).or_default();
                    if queue.len() >= POLL_QUEUE_CAPACITY {
                        queue.pop_front();
                        tracing::warn!(target: "ema_examples::ssf", stream = %stream.stream_id, "poll queue full: the oldest SET was dropped");
                    }
                    queue.push_back((jti, set));
                }
                self.queued.notify_waiters();
                Delivery::Queued
            }
        }
    }

    /// Answers an RFC 8936 poll presenting `authorization` with `body`: drops the SETs it
    /// acknowledges or reports in `setErrs` (logged), then returns up to `maxEvents` queued
    /// SETs, waiting for one up to the stream's poll wait unless `returnImmediately`.
    pub async fn poll(&self, authorization: Option<&[u8]>, body: &[u8]) -> PollAnswer {
        let Some(stream) = self.caller(authorization) else {
            return PollAnswer::Unauthenticated;
        };
        let StreamDelivery::Poll(wait) = stream.delivery else {
            return PollAnswer::NotFound;
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Request {
            #[serde(default)]
            max_events: Option<usize>,
            #[serde(default)]
            return_immediately: bool,
            #[serde(default)]
            ack: Vec<String>,
            #[serde(default)]
            set_errs: serde_json::Map<String, serde_json::Value>,
        }
        let Ok(req) = serde_json::from_slice::<Request>(body) else {
            return PollAnswer::BadRequest;
        };
        for (jti, err) in &req.set_errs {
            tracing::warn!(target: "ema_examples::ssf", stream = %stream.stream_id, %jti, err = %err, "the receiver refused a polled SET");
        }
        let max = req.max_events.unwrap_or(100).clamp(1, MAX_POLL_EVENTS);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.queued.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let (sets, more) = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let queue = queues.entry(stream.stream_id.clone()).or_default();
                queue.retain(|(jti, _)| !req.ack.contains(jti) && !req.set_errs.contains_key(jti));
                let sets: serde_json::Map<String, serde_json::Value> = queue
                    .iter()
                    .take(max)
                    .map(|(jti, set)| (jti.clone(), set.clone().into()))
                    .collect();
                (sets, queue.len() > max)
            };
            if !sets.is_empty() || req.return_immediately {
                return PollAnswer::Sets(serde_json::json!({"sets": sets, "moreAvailable": more}));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return PollAnswer::Sets(serde_json::json!({"sets": {}, "moreAvailable": false}));
            }
        }
    }

    /// The status of the stream `stream_id` (enabled until set otherwise).
    pub fn status(&self, stream_id: &str) -> Option<StreamStatus> {
        let known = self.streams.iter().any(|s| s.stream_id == stream_id);
        known.then(|| {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(stream_id)
                .map_or(StreamStatus::Enabled, |s| s.status)
        })
    }

    /// Sets the status of the stream `stream_id` and, when it changed, pushes `stream-updated`
    /// to it (SSF §8.1.5); `None` for an unknown stream, `Some(None)` when nothing changed.
    pub async fn set_status(
        &self,
        stream_id: &str,
        status: StreamStatus,
    ) -> Option<Option<Delivery>> {
        let stream = self.streams.iter().find(|s| s.stream_id == stream_id)?;
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = state.entry(stream_id.to_owned()).or_insert(StreamState {
                status: StreamStatus::Enabled,
                last_verification: None,
            });
            let changed = entry.status != status;
            entry.status = status;
            changed
        };
        if !changed {
            return Some(None);
        }
        let delivery = match self.event_set(
            stream,
            serde_json::json!({"format": "opaque", "id": stream.stream_id}),
            event_type::STREAM_UPDATED,
            serde_json::json!({"status": status.as_str()}),
        ) {
            Ok(set) => self.send(stream, set).await,
            Err(e) => Delivery::Failed(format!("signing: {e}")),
        };
        tracing::info!(
            target: "ema_examples::ssf", stream = %stream.stream_id, status = status.as_str(),
            outcome = %delivery.name(), "stream-updated pushed"
        );
        Some(Some(delivery))
    }

    /// Answers a verification request presenting `authorization` with `body` (SSF §8.1.4.2):
    /// for the caller's own stream, at most once per `min_verification_interval`, pushes the
    /// verification SET echoing `state` (when the stream is enabled), then accepts.
    pub async fn verify(&self, authorization: Option<&[u8]>, body: &[u8]) -> VerifyAnswer {
        let Some(stream) = self.caller(authorization) else {
            return VerifyAnswer::Unauthenticated;
        };
        #[derive(serde::Deserialize)]
        struct Request {
            stream_id: String,
            #[serde(default)]
            state: Option<String>,
        }
        let Ok(req) = serde_json::from_slice::<Request>(body) else {
            return VerifyAnswer::BadRequest;
        };
        if req.stream_id != stream.stream_id {
            return VerifyAnswer::NotFound;
        }
        let now = self.clock.now();
        let status = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = state
                .entry(stream.stream_id.clone())
                .or_insert(StreamState {
                    status: StreamStatus::Enabled,
                    last_verification: None,
                });
            if let Some(last) = entry.last_verification {
                let next = last.plus(stream.min_verification_interval);
                if now < next {
                    return VerifyAnswer::TooSoon(next.as_secs() - now.as_secs());
                }
            }
            entry.last_verification = Some(now);
            entry.status
        };
        if status != StreamStatus::Enabled {
            return VerifyAnswer::Accepted(None);
        }
        let mut payload = serde_json::Map::new();
        if let Some(state) = req.state {
            payload.insert("state".into(), state.into());
        }
        let delivery = match self.event_set(
            stream,
            serde_json::json!({"format": "opaque", "id": stream.stream_id}),
            event_type::VERIFICATION,
            payload.into(),
        ) {
            Ok(set) => self.send(stream, set).await,
            Err(e) => Delivery::Failed(format!("signing: {e}")),
        };
        tracing::info!(
            target: "ema_examples::ssf", stream = %stream.stream_id,
            outcome = %delivery.name(), "verification pushed"
        );
        VerifyAnswer::Accepted(Some(delivery))
    }

    /// The stream whose receiver credential is `authorization` (compared in constant time).
    fn caller(&self, authorization: Option<&[u8]>) -> Option<&PushStream> {
        let presented = sha256(authorization.unwrap_or_default());
        let mut found = None;
        for stream in self.streams.iter() {
            let Some(expected) = &stream.receiver_authorization else {
                continue;
            };
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                &presented,
                &sha256(expected.as_bytes()),
            )
            .is_ok();
            if same && found.is_none() {
                found = Some(stream);
            }
        }
        found
    }

    /// The stream configuration (SSF §8.1.1) of the caller's stream.
    fn stream_configuration(&self, stream: &PushStream) -> serde_json::Value {
        serde_json::json!({
            "stream_id": stream.stream_id,
            "iss": self.issuer,
            "aud": stream.audience,
            "delivery": match stream.delivery {
                StreamDelivery::Push => serde_json::json!({"method": "urn:ietf:rfc:8935", "endpoint_url": stream.endpoint}),
                StreamDelivery::Poll(_) => serde_json::json!({"method": "urn:ietf:rfc:8936", "endpoint_url": format!("{}{SSF_POLL_PATH}", self.issuer)}),
            },
            "events_delivered": [
                event_type::ACCOUNT_DISABLED,
                event_type::ACCOUNT_ENABLED,
                event_type::ACCOUNT_PURGED,
                event_type::VERIFICATION,
                event_type::STREAM_UPDATED,
            ],
            "min_verification_interval": stream.min_verification_interval,
        })
    }

    /// The streams.
    pub fn streams(&self) -> &[PushStream] {
        &self.streams
    }

    /// The discovery document (SSF §7.1): push delivery, the verification and stream
    /// configuration endpoints.
    pub fn configuration(&self, jwks_uri: &str) -> serde_json::Value {
        serde_json::json!({
            "spec_version": "1_0",
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
            "configuration_endpoint": format!("{}{SSF_STREAM_PATH}", self.issuer),
            "verification_endpoint": format!("{}{SSF_VERIFICATION_PATH}", self.issuer),
            "default_subjects": "ALL",
        })
    }

    /// The router serving the discovery document, the verification endpoint and the stream
    /// configuration endpoint.
    pub fn router(&self, jwks_uri: &str) -> Router {
        let doc = self.configuration(jwks_uri).to_string();
        Router::new()
            .route(
                SSF_CONFIGURATION_PATH,
                get(move || {
                    let doc = doc.clone();
                    async move { ([("content-type", "application/json")], doc).into_response() }
                }),
            )
            .route(SSF_VERIFICATION_PATH, post(verify_route))
            .route(SSF_STREAM_PATH, get(stream_route))
            .route(SSF_POLL_PATH, post(poll_route))
            .with_state(self.clone())
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
        self.event_set_only(
            stream,
            serde_json::json!({"format": "iss_sub", "iss": self.issuer, "sub": subject}),
            event.uri(),
            serde_json::json!({"initiating_entity": "admin"}),
        )
    }

    fn event_set_only(
        &self,
        stream: &PushStream,
        sub_id: serde_json::Value,
        event_uri: &str,
        payload: serde_json::Value,
    ) -> Result<String, ema_jose::SignError> {
        self.event_set(stream, sub_id, event_uri, payload)
            .map(|(_, set)| set)
    }

    fn event_set(
        &self,
        stream: &PushStream,
        sub_id: serde_json::Value,
        event_uri: &str,
        payload: serde_json::Value,
    ) -> Result<(String, String), ema_jose::SignError> {
        let now = self.clock.now().as_secs();
        let mut events = serde_json::Map::new();
        events.insert(event_uri.to_owned(), payload);
        let jti = random_id()?;
        let claims = serde_json::json!({
            "iss": self.issuer,
            "jti": jti,
            "iat": now,
            "aud": stream.audience,
            "sub_id": sub_id,
            "events": events,
        });
        Ok((
            jti,
            self.keys.active().sign_jwt(Some(SECEVENT_TYP), &claims)?,
        ))
    }

    /// Pushes `event` for `subject` to every stream, each with bounded retries; the outcome
    /// per stream endpoint.
    pub async fn push(&self, subject: &str, event: AccountEvent) -> Vec<(String, Delivery)> {
        let mut out = Vec::with_capacity(self.streams.len());
        for stream in self.streams.iter() {
            let status = self.status(&stream.stream_id);
            let set = self.event_set(
                stream,
                serde_json::json!({"format": "iss_sub", "iss": self.issuer, "sub": subject}),
                event.uri(),
                serde_json::json!({"initiating_entity": "admin"}),
            );
            let delivery = match (status, set) {
                (Some(s), _) if s != StreamStatus::Enabled => Delivery::Skipped(s),
                (_, Ok(set)) => self.send(stream, set).await,
                (_, Err(e)) => Delivery::Failed(format!("signing: {e}")),
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

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": code, "error_description": description}).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn unauthenticated() -> Response {
    let mut resp = json_error(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the stream's receiver credential is required",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"ssf\""),
    );
    resp
}

async fn verify_route(
    State(t): State<SsfTransmitter>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match t.verify(authorization, &body).await {
        VerifyAnswer::Accepted(_) => StatusCode::NO_CONTENT.into_response(),
        VerifyAnswer::Unauthenticated => unauthenticated(),
        VerifyAnswer::BadRequest => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be {\"stream_id\": ..., \"state\": ...}",
        ),
        VerifyAnswer::NotFound => json_error(StatusCode::NOT_FOUND, "not_found", "no such stream"),
        VerifyAnswer::TooSoon(wait) => {
            let mut resp = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "verification requested sooner than min_verification_interval",
            );
            if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[derive(serde::Deserialize)]
struct StreamQuery {
    stream_id: Option<String>,
}

async fn stream_route(
    State(t): State<SsfTransmitter>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let Some(stream) = t.caller(authorization) else {
        return unauthenticated();
    };
    if query.stream_id.is_some_and(|id| id != stream.stream_id) {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such stream");
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        t.stream_configuration(stream).to_string(),
    )
        .into_response()
}

async fn poll_route(State(t): State<SsfTransmitter>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match t.poll(authorization, &body).await {
        PollAnswer::Sets(doc) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            doc.to_string(),
        )
            .into_response(),
        PollAnswer::Unauthenticated => unauthenticated(),
        PollAnswer::BadRequest => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be an RFC 8936 poll request",
        ),
        PollAnswer::NotFound => json_error(StatusCode::NOT_FOUND, "not_found", "not a poll stream"),
    }
}
