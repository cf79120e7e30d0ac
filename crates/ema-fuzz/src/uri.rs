//! Target for the two URI comparisons a server makes on attacker-chosen strings: the DPoP `htu`
//! normalization (D-27) and redirect URI matching (RFC 6749 §3.1.2.3 with the loopback port
//! exception of RFC 8252 §7.3).

use ema_grant::dpop::normalize_htu;
use ema_grant::redirect::redirect_uri_matches;

/// `uri_rules`: the input is two strings split at the first NUL byte (lossy UTF-8). Invariants:
///
/// - an accepted `htu` normalizes to an `http`/`https` URI without query, fragment or
///   userinfo, of ASCII only, and normalizing it again changes nothing (so both sides of a
///   comparison meet in one form);
/// - redirect matching is reflexive and symmetric, and two different URIs match only when both
///   are `http` loopback IP literals with the same host and the same path and query.
pub fn uri_rules(data: &[u8]) {
    let (a, b) = match data.iter().position(|&byte| byte == 0) {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => (data, &[][..]),
    };
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    for uri in [a.as_ref(), b.as_ref()] {
        if let Some(normal) = normalize_htu(uri) {
            assert!(normal.is_ascii(), "non-ASCII normal form {normal:?}");
            assert!(
                normal.starts_with("https://") || normal.starts_with("http://"),
                "scheme of {normal:?}"
            );
            assert!(
                !normal.contains(['?', '#', '@']),
                "{normal:?} keeps a query, fragment or userinfo"
            );
            assert_eq!(
                normalize_htu(&normal).as_deref(),
                Some(normal.as_str()),
                "normalization of {uri:?} is not idempotent"
            );
        }
        assert!(
            redirect_uri_matches(uri, uri),
            "{uri:?} does not match itself"
        );
    }
    let forward = redirect_uri_matches(&a, &b);
    assert_eq!(
        forward,
        redirect_uri_matches(&b, &a),
        "matching is not symmetric"
    );
    if forward && a != b {
        for uri in [a.as_ref(), b.as_ref()] {
            assert!(
                uri.starts_with("http://127.0.0.1") || uri.starts_with("http://[::1]"),
                "{uri:?} matched another URI without being a loopback redirect"
            );
        }
        let host = |u: &str| u.starts_with("http://127.0.0.1");
        assert_eq!(host(&a), host(&b), "loopback hosts differ");
    }
}
