//! `ema decode` and `ema verify`.

use std::io::Read;

use ema_client::HttpFetcher;
use ema_jose::{
    AudienceRule, HeaderPolicy, JwkSet, ParseOptions, TimeOptions, TokenKind, UnixTime,
    UnverifiedJwt, typ, typ_matches,
};
use serde_json::{Value, json};

use crate::exit::{Exit, Failure, error_chain};
use crate::print_json;

/// The token from the argument, or stdin for `-`.
fn read_token(arg: &str) -> Result<String, Failure> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::usage(format!("cannot read the token from stdin: {e}")))?;
    Ok(text.trim().to_owned())
}

fn parse(token: &str) -> Result<UnverifiedJwt, Failure> {
    UnverifiedJwt::parse(token, &ParseOptions::new())
        .map_err(|e| Failure::usage(format!("this is not a well-formed JWT: {e}")))
}

/// `ema decode`.
pub(crate) fn decode(arg: &str, json_out: bool) -> Result<(), Failure> {
    let jwt = parse(&read_token(arg)?)?;
    let header = Value::Object(jwt.header().raw().clone());
    let claims = Value::Object(jwt.unverified_claims().as_object().clone());
    eprintln!("UNVERIFIED: the signature was not checked; do not trust these claims");
    if json_out {
        print_json(&json!({ "verified": false, "header": header, "claims": claims }));
    } else {
        println!("UNVERIFIED header:");
        print_json(&header);
        println!("UNVERIFIED claims:");
        print_json(&claims);
    }
    Ok(())
}

/// The token kind named by `--kind`, else the one its `typ` names.
fn kind(flag: Option<&str>, found_typ: Option<&str>) -> Result<TokenKind, Failure> {
    match flag {
        Some("id-token") => Ok(TokenKind::IdToken),
        Some("id-jag") => Ok(TokenKind::IdJag),
        Some("access-token") => Ok(TokenKind::AccessToken),
        Some("client-assertion") => Ok(TokenKind::ClientAssertion),
        Some(other) => Err(Failure::usage(format!(
            "`--kind` `{other}` is not one of id-token, id-jag, access-token, client-assertion"
        ))),
        None => Ok(match found_typ {
            Some(t) if typ_matches(t, typ::ID_JAG) => TokenKind::IdJag,
            Some(t) if typ_matches(t, typ::ACCESS_TOKEN) => TokenKind::AccessToken,
            Some(t) if typ_matches(t, typ::CLIENT_ASSERTION) => TokenKind::ClientAssertion,
            _ => TokenKind::IdToken,
        }),
    }
}

/// The options of `ema verify`.
pub(crate) struct VerifyArgs<'a> {
    pub(crate) jwt: &'a str,
    pub(crate) jwks: &'a str,
    pub(crate) iss: Option<&'a str>,
    pub(crate) aud: Option<&'a str>,
    pub(crate) kind: Option<&'a str>,
    pub(crate) now: Option<u64>,
}

async fn load_jwks(source: &str, fetcher: &HttpFetcher) -> Result<JwkSet, Failure> {
    let bytes = if source.starts_with("https://") || source.starts_with("http://") {
        let url = fetcher
            .check_url("jwks", source)
            .map_err(|e| Failure::usage(format!("the JWKS URL is refused: {e}{}", hint(source))))?;
        let response = fetcher.get(&url).await.map_err(|e| {
            Failure::new(
                Exit::Network,
                format!("cannot fetch the JWKS at {source}: {}", error_chain(&e)),
            )
        })?;
        if response.status != 200 {
            return Err(Failure::new(
                Exit::Network,
                format!("the JWKS at {source} answered HTTP {}", response.status),
            ));
        }
        response.body
    } else {
        std::fs::read(source)
            .map_err(|e| Failure::usage(format!("cannot read the JWKS file {source}: {e}")))?
    };
    JwkSet::parse(&bytes).map_err(|e| Failure::usage(format!("the JWKS is not usable: {e}")))
}

/// The `--insecure-loopback` hint for an `http` URL.
pub(crate) fn hint(url: &str) -> &'static str {
    if url.starts_with("http://") {
        " (for a development server on loopback, add --insecure-loopback)"
    } else {
        ""
    }
}

/// `ema verify`.
pub(crate) async fn verify(
    args: &VerifyArgs<'_>,
    fetcher: &HttpFetcher,
    json_out: bool,
) -> Result<(), Failure> {
    let jwt = parse(&read_token(args.jwt)?)?;
    let keys = load_jwks(args.jwks, fetcher).await?;
    let kind = kind(args.kind, jwt.header().typ())?;
    let invalid = |what: String| Failure::new(Exit::Invalid, what);
    let policy = HeaderPolicy::for_kind(kind);
    let alg = policy
        .check(jwt.header())
        .map_err(|e| invalid(format!("the header is refused ({kind:?}): {e}")))?;
    let key = keys
        .find(jwt.header().kid(), alg)
        .map_err(|e| invalid(format!("no key in the JWKS verifies this token: {e}")))?
        .clone();
    let verified = jwt
        .verify(&policy, &key)
        .map_err(|e| invalid(format!("the token did not verify: {e}")))?;
    let claims = verified.claims();
    let now = args.now.map_or_else(UnixTime::now, UnixTime::from_secs);
    let time = TimeOptions::new().with_require_iat(!matches!(kind, TokenKind::IdToken));
    claims
        .check_validity(&time, now)
        .map_err(|e| invalid(format!("the token's validity window fails: {e}")))?;
    if let Some(iss) = args.iss {
        claims
            .check_issuer(iss)
            .map_err(|e| invalid(format!("the issuer check fails: {e}")))?;
    }
    if let Some(aud) = args.aud {
        claims
            .check_audience(aud, AudienceRule::AnyOf)
            .map_err(|e| invalid(format!("the audience check fails: {e}")))?;
    }
    let header = Value::Object(verified.header().raw().clone());
    let claims = Value::Object(claims.as_object().clone());
    let alg = verified.algorithm().name();
    eprintln!(
        "VERIFIED: {kind:?} signed with {alg} by key {}{}{}",
        key.kid().unwrap_or("(no kid)"),
        args.iss.map(|i| format!(", iss `{i}`")).unwrap_or_default(),
        args.aud.map(|a| format!(", aud `{a}`")).unwrap_or_default(),
    );
    if json_out {
        print_json(&json!({
            "verified": true,
            "alg": alg,
            "kid": key.kid(),
            "header": header,
            "claims": claims,
        }));
    } else {
        println!("VERIFIED header:");
        print_json(&header);
        println!("VERIFIED claims:");
        print_json(&claims);
    }
    Ok(())
}
