//! The token endpoints' audit events: the facts a grant attached to its response
//! ([`ema_grant::IdJagIssuance`], [`ema_grant::IdJagRedemption`]) appended to the server's
//! [`AuditLog`]. The trail must be complete: a token whose event could not be appended is not
//! handed out (503 `temporarily_unavailable`).

use ema_audit::{AuditLog, IdJagIssued, IdJagRedeemed};
use ema_grant::{ErrorCode, IdJagIssuance, IdJagRedemption, OAuthError};
use ema_id_jag::ScopeSet;

/// The scope names of `scope`, for an event.
fn scope_names(scope: Option<&ScopeSet>) -> Vec<String> {
    scope
        .map(|s| s.iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The answer when the trail refuses an event: the token is withheld.
fn unavailable(what: &'static str, error: &ema_audit::AuditError) -> http::Response<Vec<u8>> {
    tracing::error!(target: "ema_audit", %error, "appending {what} to the audit trail failed; the token is withheld");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the server cannot record this request; try again later",
    )
    .to_response()
}

/// Appends `IdJagIssued` for a successful token exchange (the response's [`IdJagIssuance`]);
/// other responses pass unchanged.
pub(crate) fn id_jag_issued(
    log: &AuditLog,
    response: http::Response<Vec<u8>>,
) -> http::Response<Vec<u8>> {
    if !log.is_enabled() || !response.status().is_success() {
        return response;
    }
    let Some(issued) = response.extensions().get::<IdJagIssuance>() else {
        return response;
    };
    let mut event = IdJagIssued::new(
        issued.issuer.as_str(),
        issued.subject.as_str(),
        issued.client_id.as_str(),
        issued.audience.as_str(),
        issued.jti.as_str(),
    )
    .with_scopes(scope_names(issued.scope.as_ref()));
    // The event names one resource; an ID-JAG for several names them space-separated.
    if !issued.resources.is_empty() {
        let resources: Vec<&str> = issued.resources.iter().map(|r| r.as_str()).collect();
        event = event.with_resource(resources.join(" "));
    }
    match log.append(event) {
        Ok(_) => response,
        Err(e) => unavailable("an issued ID-JAG", &e),
    }
}

/// Appends `IdJagRedeemed` for a successful jwt-bearer or authorization code grant (the
/// response's [`IdJagRedemption`]; the code grant's event names its grant type and links the
/// IdP sign-in); other responses pass unchanged.
pub(crate) fn id_jag_redeemed(
    log: &AuditLog,
    response: http::Response<Vec<u8>>,
) -> http::Response<Vec<u8>> {
    if !log.is_enabled() || !response.status().is_success() {
        return response;
    }
    let Some(redeemed) = response.extensions().get::<IdJagRedemption>() else {
        return response;
    };
    let event = IdJagRedeemed::new(
        redeemed.id_jag.iss.as_str(),
        redeemed.id_jag.sub.as_str(),
        redeemed.id_jag.jti.as_str(),
        redeemed.client_id.as_str(),
        redeemed.access_token_jti.as_str(),
    )
    .with_resource(redeemed.resource.as_str())
    .with_scopes(scope_names(redeemed.scope.as_ref()));
    // Absent for the jwt-bearer grant: its events read as they always did.
    let event = if redeemed.grant_type == ema_grant::JWT_BEARER {
        event
    } else {
        event.with_grant_type(redeemed.grant_type)
    };
    match log.append(event) {
        Ok(_) => response,
        Err(e) => unavailable("a redeemed grant", &e),
    }
}

/// Appends a `RevocationApplied` event for each ledger change of a revoke command (RV-29).
pub(crate) fn revocation_applied(
    log: &AuditLog,
    source: &str,
    changes: &[ema_grant::revocation::LedgerChange],
) -> Result<(), ema_audit::AuditError> {
    use ema_grant::revocation::{LedgerChange, RevocationScope};
    if !log.is_enabled() {
        return Ok(());
    }
    let space = |scope: &RevocationScope| match scope {
        RevocationScope::Idp { issuer, .. } => ("idp", issuer.clone()),
        RevocationScope::Local { issuer } => ("local", issuer.clone()),
        _ => ("other", String::new()),
    };
    for change in changes {
        let event = match change {
            LedgerChange::Watermark {
                scope,
                subject,
                at,
                kind,
            } => {
                let (space, issuer) = space(scope);
                ema_audit::RevocationApplied::new(source, "watermark", space, issuer, subject)
                    .with_at(*at)
                    .with_reason(kind.as_str())
            }
            LedgerChange::Disabled {
                scope,
                subject,
                kind,
            } => {
                let (space, issuer) = space(scope);
                ema_audit::RevocationApplied::new(source, "disabled", space, issuer, subject)
                    .with_reason(kind.as_str())
            }
            LedgerChange::Enabled { scope, subject } => {
                let (space, issuer) = space(scope);
                ema_audit::RevocationApplied::new(source, "enabled", space, issuer, subject)
            }
            LedgerChange::TokenDenied { issuer, jti, until } => ema_audit::RevocationApplied::new(
                source,
                "token_denied",
                "token",
                issuer.as_str(),
                jti,
            )
            .with_at(*until)
            .with_reason("token_revocation"),
            _ => continue,
        };
        log.append(event)?;
    }
    Ok(())
}

/// Appends a `SecurityEventReceived` event for a pushed SET or a GTR call (RV-29).
pub(crate) fn security_event_received(
    log: &AuditLog,
    source: &str,
    receipt: &ema_grant::ssf::SetReceipt,
) -> Result<(), ema_audit::AuditError> {
    if !log.is_enabled() {
        return Ok(());
    }
    let mut event = ema_audit::SecurityEventReceived::new(
        source,
        receipt.transmitter.as_str(),
        receipt.outcome_name(),
    );
    if let Some(jti) = &receipt.jti {
        event = event.with_jti(jti.as_str());
    }
    if let Some(kind) = &receipt.event_type {
        event = event.with_event_type(kind.as_str());
    }
    if let Some(subject) = &receipt.subject {
        event = event.with_subject(subject);
    }
    log.append(event).map(|_| ())
}

/// Appends `StreamHealthChanged` for a change of an SSF stream's health (RV-26), logging it at
/// `WARN` when it is an alert (overdue, paused, disabled).
pub fn stream_health_changed(
    log: &AuditLog,
    change: &ema_grant::ssf_health::HealthChange,
) -> Result<(), ema_audit::AuditError> {
    if change.is_alert() {
        tracing::warn!(
            target: "ema_server::ssf_health",
            transmitter = %change.transmitter, from = change.from.as_str(), to = change.to.as_str(),
            "SSF stream unhealthy: access tokens for its IdPs fall back to 300 s (RV-24)"
        );
    } else {
        tracing::info!(
            target: "ema_server::ssf_health",
            transmitter = %change.transmitter, from = change.from.as_str(), to = change.to.as_str(),
            "SSF stream health changed"
        );
    }
    if !log.is_enabled() {
        return Ok(());
    }
    log.append(ema_audit::StreamHealthChanged::new(
        change.transmitter.as_str(),
        change.from.as_str(),
        change.to.as_str(),
    ))
    .map(|_| ())
}

/// Records one received SET on the audit trail (RV-29): `SecurityEventReceived`, the ledger
/// changes it made (`RevocationApplied`) and the stream-health change of a `stream-updated`
/// (`StreamHealthChanged`, RV-26). `source` is `ssf` for a push, `ssf-poll` for an RFC 8936
/// poll (RV-27). A server that cannot record a SET must not acknowledge it.
///
/// # Errors
///
/// The trail's [`ema_audit::AuditError`].
pub fn security_event_recorded(
    log: &AuditLog,
    source: &str,
    receipt: &ema_grant::ssf::SetReceipt,
) -> Result<(), ema_audit::AuditError> {
    use ema_grant::ssf::SetOutcome;
    let changes = match &receipt.outcome {
        Ok(SetOutcome::Applied(changes)) => changes.as_slice(),
        _ => &[],
    };
    let health = match &receipt.outcome {
        Ok(SetOutcome::StreamUpdated {
            change: Some(change),
            ..
        }) => Some(change),
        _ => None,
    };
    security_event_received(log, source, receipt)?;
    revocation_applied(log, source, changes)?;
    match health {
        Some(change) => stream_health_changed(log, change),
        None => Ok(()),
    }
}
