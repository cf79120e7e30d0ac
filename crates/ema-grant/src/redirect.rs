//! Redirect URI matching (RFC 6749 §3.1.2.3 exact matching, with the one exception of RFC 8252
//! §7.3 for native apps' loopback listeners).

/// Whether the `requested` redirect URI matches the `registered` one: byte-for-byte equal, or
/// both `http` URIs on the same loopback IP literal (`127.0.0.1` or `[::1]`) that differ only
/// in the port. RFC 8252 §7.3 asks authorization servers to allow any port for loopback IP
/// redirect URIs, because a native app (a CLI, a desktop agent) binds whatever port the OS
/// gives it at the time of the request. `localhost` gets no such exception (RFC 8252 §8.3), and
/// neither does anything but the port: path, query, scheme and host still match exactly.
///
/// ```
/// use ema_grant::redirect::redirect_uri_matches;
///
/// let registered = "http://127.0.0.1/callback";
/// assert!(redirect_uri_matches(registered, "http://127.0.0.1/callback"));
/// assert!(redirect_uri_matches(registered, "http://127.0.0.1:49152/callback"));
/// assert!(!redirect_uri_matches(registered, "http://127.0.0.1:49152/other"));
/// assert!(!redirect_uri_matches(registered, "http://localhost:49152/callback"));
/// assert!(!redirect_uri_matches(
///     "https://app.example/cb",
///     "https://app.example:8443/cb"
/// ));
/// ```
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(requested)) {
        (Some((host_a, rest_a)), Some((host_b, rest_b))) => host_a == host_b && rest_a == rest_b,
        _ => false,
    }
}

/// For `http://127.0.0.1[:port]<rest>` or `http://[::1][:port]<rest>`: the host and `<rest>`
/// (path, query), the port dropped after checking it is a number.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"]
        .into_iter()
        .find(|h| after.starts_with(h))?;
    let tail = after.get(host.len()..)?;
    let rest = match tail.strip_prefix(':') {
        Some(port_and_rest) => {
            let end = port_and_rest
                .find(['/', '?', '#'])
                .unwrap_or(port_and_rest.len());
            let port = port_and_rest.get(..end)?;
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            port_and_rest.get(end..)?
        }
        None => tail,
    };
    // The host must end here: `http://127.0.0.1.evil.example/` is not a loopback URI.
    if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) || rest.contains('#') {
        return None;
    }
    Some((host, rest))
}

#[cfg(test)]
mod tests {
    use super::redirect_uri_matches as m;

    #[test]
    fn exact_or_loopback_port_only() {
        let reg = "http://127.0.0.1/callback";
        assert!(m(reg, reg));
        assert!(m(reg, "http://127.0.0.1:1/callback"));
        assert!(m(
            "http://127.0.0.1:9/callback",
            "http://127.0.0.1:65535/callback"
        ));
        assert!(m("http://[::1]/cb?x=1", "http://[::1]:5000/cb?x=1"));
        for refused in [
            "http://127.0.0.1:1/callback/",
            "http://127.0.0.1:1/Callback",
            "http://127.0.0.1:1/callback?x=1",
            "http://127.0.0.2:1/callback",
            "http://[::1]:1/callback",
            "http://localhost:1/callback",
            "https://127.0.0.1:1/callback",
            "http://127.0.0.1.evil.example/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:x/callback",
            "http://127.0.0.1:123456/callback",
            "http://127.0.0.1:1@evil.example/callback",
            "http://127.0.0.1:1/callback#f",
        ] {
            assert!(!m(reg, refused), "{refused}");
        }
        // Not loopback: exact only.
        assert!(!m("https://app.example/cb", "https://app.example:443/cb"));
        assert!(!m("http://localhost/cb", "http://localhost:8080/cb"));
    }
}
