//! A readable trace of the flow: decoded JWT headers and claims with the signature elided.

use serde_json::Value;

/// Decodes a compact JWS without verifying it, for display only.
pub fn decode(token: &str) -> Option<(Value, Value)> {
    let mut parts = token.split('.');
    let header = ema_jose::base64url::decode(parts.next()?.as_bytes())?;
    let claims = ema_jose::base64url::decode(parts.next()?.as_bytes())?;
    Some((
        serde_json::from_slice(&header).ok()?,
        serde_json::from_slice(&claims).ok()?,
    ))
}

/// Renders a token as `header . claims . <signature elided>`, indented.
pub fn show(label: &str, token: &str) -> String {
    match decode(token) {
        Some((h, c)) => format!(
            "    {label}: {} bytes\n      header: {h}\n      claims: {}\n      signature: <elided>",
            token.len(),
            serde_json::to_string_pretty(&c)
                .unwrap_or_default()
                .replace('\n', "\n      ")
        ),
        None => format!("    {label}: <not a JWS>"),
    }
}
