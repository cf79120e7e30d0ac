//! The RFC 8936 poll client of an authorization server (RV-27), for SSF transmitters that
//! cannot push to it.
//!
//! Sans-I/O: an [`SsfPoller`] builds each poll request body ([`SsfPoller::request`]:
//! `{"maxEvents", "returnImmediately", "ack", "setErrs"}`) and takes the transmitter's answer
//! ([`SsfPoller::response`]: `{"sets": {jti: SET}, "moreAvailable"}`). Every SET goes through
//! the same validation and event policy as a pushed one ([`SsfReceiver::receive`], RV-5..RV-10,
//! RV-13), from the transmitter the poll was addressed to. An accepted SET is acknowledged in
//! the next request; a refused one is reported in `setErrs` with its RFC 8935 code (RFC 8936
//! §2.3); a SET that could not be processed because the ledger or the deduplication store is
//! unreachable is neither (the transmitter delivers it again, RV-14). Acknowledgements of a
//! request that failed are sent again with the next. The server does the HTTP: `POST` the body
//! with `Content-Type: application/json` and the stream's `Authorization` value.
//!
//! ```
//! use ema_grant::revocation::MemoryLedger;
//! use ema_grant::ssf::{SsfReceiver, TransmitterTrust, SECEVENT_TYP};
//! use ema_grant::ssf_poll::SsfPoller;
//! use ema_grant::{InMemoryReplayStore, Revoker};
//! use ema_jose::{Algorithm, JwkSet, SigningKey, UnixTime};
//!
//! let idp = "https://idp.acme.example";
//! let aud = "https://auth.tasks.example/ssf/events";
//! let key = SigningKey::generate(Algorithm::ES256, Some("set-1".into()))?;
//! let receiver = SsfReceiver::new(Revoker::new(MemoryLedger::new(), "https://auth.tasks.example"),
//!     InMemoryReplayStore::new(100))
//!     .transmitter(TransmitterTrust::new(idp, JwkSet::from_keys([key.verifying_key().clone()]),
//!         "Bearer push-unused", aud));
//! let poller = SsfPoller::new(receiver, idp).max_events(10);
//! let now = UnixTime::from_secs(1_767_229_000);
//! let first = poller.request();
//! assert_eq!(first["ack"], serde_json::json!([]));
//! let set = key.sign_jwt(Some(SECEVENT_TYP), &serde_json::json!({
//!     "iss": idp, "aud": aud, "jti": "4d3559ec", "iat": now.as_secs(),
//!     "sub_id": {"format": "iss_sub", "iss": idp, "sub": "00u8k2Lq91"},
//!     "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}},
//! }))?;
//! let answer = serde_json::json!({"sets": {"4d3559ec": set}, "moreAvailable": false});
//! let polled = pollster::block_on(poller.response(answer.to_string().as_bytes(), now))?;
//! assert_eq!(polled.receipts.len(), 1);
//! // The next request acknowledges it.
//! assert_eq!(poller.request()["ack"], serde_json::json!(["4d3559ec"]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use ema_jose::UnixTime;
use serde_json::Value;

use ema_jose::{ParseOptions, UnverifiedJwt};

use crate::ssf::{MAX_SET_LEN, SetClaimError, SetReceipt, SsfError, SsfReceiver};

/// The default `maxEvents` of a poll request.
pub const DEFAULT_MAX_EVENTS: u32 = 100;

/// The largest poll response accepted, in bytes (`maxEvents` SETs of at most
/// [`crate::ssf::MAX_SET_LEN`] each, with room for the JSON around them).
pub const MAX_POLL_RESPONSE_LEN: usize = 4 * 1024 * 1024;

/// Why a poll response could not be read (nothing in it was processed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// The response is not the JSON of RFC 8936 §2.5 (`sets` an object of strings).
    #[error("the poll response is malformed: {0}")]
    Malformed(&'static str),
    /// The response is larger than [`MAX_POLL_RESPONSE_LEN`].
    #[error("the poll response is too large")]
    TooLarge,
    /// The poller's transmitter is not one of the receiver's.
    #[error("the transmitter `{0}` is not configured")]
    UnknownTransmitter(String),
}

/// What one poll response did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Polled {
    /// One receipt per SET, as for a push (for the log and the audit trail, RV-29).
    pub receipts: Vec<SetReceipt>,
    /// The transmitter has more SETs: poll again at once.
    pub more_available: bool,
}

#[derive(Debug, Default)]
struct Pending {
    /// Acknowledgements not yet sent.
    ack: Vec<String>,
    /// Errors not yet sent.
    errs: BTreeMap<String, Value>,
    /// Sent with the request in flight.
    in_flight: Option<(Vec<String>, BTreeMap<String, Value>)>,
}

/// The RFC 8936 poll client for one transmitter over an [`SsfReceiver`] (RV-27). Cheap to
/// clone; clones share the pending acknowledgements. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct SsfPoller {
    receiver: SsfReceiver,
    issuer: String,
    max_events: u32,
    return_immediately: bool,
    pending: Arc<Mutex<Pending>>,
}

impl SsfPoller {
    /// A poller for the transmitter `issuer` (one of `receiver`'s), long polling for up to
    /// [`DEFAULT_MAX_EVENTS`] SETs.
    pub fn new(receiver: SsfReceiver, issuer: impl Into<String>) -> Self {
        Self {
            receiver,
            issuer: issuer.into(),
            max_events: DEFAULT_MAX_EVENTS,
            return_immediately: false,
            pending: Arc::default(),
        }
    }

    /// Sets `maxEvents` (at least 1).
    #[must_use]
    pub fn max_events(mut self, n: u32) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// Asks the transmitter to answer at once rather than hold the request until SETs are
    /// available (`returnImmediately`; default `false`, a long poll).
    #[must_use]
    pub fn return_immediately(mut self, yes: bool) -> Self {
        self.return_immediately = yes;
        self
    }

    /// The transmitter's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        f(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The next request body (RFC 8936 §2.4), carrying the acknowledgements and errors not
    /// sent yet (and those of a request in flight that never got an answer).
    pub fn request(&self) -> Value {
        let (ack, errs) = self.with(|p| {
            let (mut ack, mut errs) = p.in_flight.take().unwrap_or_default();
            ack.append(&mut p.ack);
            errs.append(&mut p.errs);
            p.in_flight = Some((ack.clone(), errs.clone()));
            (ack, errs)
        });
        serde_json::json!({
            "maxEvents": self.max_events,
            "returnImmediately": self.return_immediately,
            "ack": ack,
            "setErrs": errs,
        })
    }

    /// The request could not be sent or got no `200`: its acknowledgements and errors go with
    /// the next.
    pub fn request_failed(&self) {
        self.with(|p| {
            if let Some((mut ack, mut errs)) = p.in_flight.take() {
                ack.append(&mut p.ack);
                errs.append(&mut p.errs);
                p.ack = ack;
                p.errs = errs;
            }
        });
    }

    /// Withdraws the acknowledgement of `jti` (not sent yet) and forgets that it was received,
    /// so the transmitter delivers it again and it is processed anew: for a server that could
    /// not record it (the audit trail, RV-29).
    pub async fn retract(&self, jti: &str) {
        self.with(|p| p.ack.retain(|a| a != jti));
        // A failure to forget leaves it a duplicate on redelivery; nothing better to do here.
        let _ = self.receiver.forget(&self.issuer, jti).await;
    }

    /// Takes the transmitter's `200` answer to the last [`request`](Self::request) at `now`:
    /// each SET is validated and applied as a pushed one would be, and queued for `ack` or
    /// `setErrs` in the next request.
    ///
    /// # Errors
    ///
    /// [`PollError`] for a response that is not RFC 8936 JSON (nothing is processed; the
    /// acknowledgements sent count as delivered all the same, the `200` says so).
    pub async fn response(&self, body: &[u8], now: UnixTime) -> Result<Polled, PollError> {
        // The request was answered: what it carried is delivered.
        self.with(|p| p.in_flight = None);
        if body.len() > MAX_POLL_RESPONSE_LEN {
            return Err(PollError::TooLarge);
        }
        let doc: Value =
            serde_json::from_slice(body).map_err(|_| PollError::Malformed("not JSON"))?;
        let sets = doc
            .get("sets")
            .and_then(Value::as_object)
            .ok_or(PollError::Malformed("`sets` is not an object"))?;
        if sets.values().any(|v| !v.is_string()) {
            return Err(PollError::Malformed("a SET is not a string"));
        }
        let more_available = match doc.get("moreAvailable") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(PollError::Malformed("`moreAvailable` is not a boolean")),
        };
        let transmitter = self
            .receiver
            .transmitters()
            .iter()
            .find(|t| t.issuer() == self.issuer)
            .ok_or_else(|| PollError::UnknownTransmitter(self.issuer.clone()))?;
        let mut receipts = Vec::with_capacity(sets.len());
        for (jti, set) in sets {
            let set = set.as_str().unwrap_or_default();
            let mut receipt = SetReceipt {
                transmitter: self.issuer.clone(),
                jti: None,
                event_type: None,
                subject: None,
                outcome: Err(SsfError::MediaType),
            };
            // RFC 8936 §2.5: the member name is the SET's `jti`; a SET under another name is
            // refused unprocessed.
            let named =
                UnverifiedJwt::parse(set.trim(), &ParseOptions::new().with_max_len(MAX_SET_LEN))
                    .ok()
                    .and_then(|jwt| {
                        jwt.unverified_claims()
                            .string("jti")
                            .ok()
                            .flatten()
                            .map(str::to_owned)
                    });
            let outcome = if named.as_deref().is_some_and(|named| named != jti) {
                Err(SsfError::Claims(SetClaimError::Missing { claim: "jti" }))
            } else {
                self.receiver
                    .receive(transmitter, set.trim(), now, &mut receipt)
                    .await
            };
            match &outcome {
                Ok(_) => self.with(|p| p.ack.push(jti.clone())),
                Err(e) => {
                    if let Some(code) = e.code() {
                        let err = serde_json::json!({
                            "err": code.as_str(),
                            "description": e.description(),
                        });
                        self.with(|p| {
                            p.errs.insert(jti.clone(), err);
                        });
                    }
                    // Without a code (ledger or keys unavailable): neither, so it comes again.
                }
            }
            receipt.outcome = outcome;
            receipts.push(receipt);
        }
        Ok(Polled {
            receipts,
            more_available,
        })
    }
}
