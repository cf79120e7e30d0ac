//! `ema discover`: the discovery walk, reporting every problem with its fix instead of
//! stopping at the first.

use ema_client::{FetchResponse, HttpFetcher};
use ema_metadata::{
    AuthorizationServerMetadata, MetadataError, ProtectedResourceMetadata,
    authorization_server_metadata_urls, find_challenge, protected_resource_metadata_urls,
};
use serde_json::{Value, json};
use url::Url;

use crate::exit::{Exit, Failure, error_chain};
use crate::jwt::hint;
use crate::print_json;

/// The ID-JAG grant profile an EMA authorization server lists (MD-1).
const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// The jwt-bearer grant type (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What the walk found: facts, and problems with their fixes.
#[derive(Default)]
struct Report {
    facts: Vec<String>,
    problems: Vec<(String, String)>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn fact(&mut self, text: String) {
        eprintln!("  {text}");
        self.facts.push(text);
    }

    fn problem(&mut self, what: String, fix: String) {
        self.problems.push((what, fix));
    }
}

/// A `200` body, or `None` for any other status; transport failures stop the walk.
async fn first_found(
    fetcher: &HttpFetcher,
    candidates: &[Url],
) -> Result<Option<(Url, Vec<u8>)>, Failure> {
    for url in candidates {
        eprintln!("GET {url}");
        let response = fetcher
            .get(url)
            .await
            .map_err(|e| network(url.as_str(), &e))?;
        if response.status == 200 {
            return Ok(Some((url.clone(), response.body)));
        }
        eprintln!("  HTTP {}", response.status);
    }
    Ok(None)
}

fn network(url: &str, e: &ema_client::FetchError) -> Failure {
    Failure::new(
        Exit::Network,
        format!("cannot fetch {url}: {}", error_chain(e)),
    )
}

/// `ema discover`.
pub(crate) async fn discover(
    mcp: &str,
    fetcher: &HttpFetcher,
    json_out: bool,
) -> Result<(), Failure> {
    let server_url = fetcher
        .check_url("MCP server URL", mcp)
        .map_err(|e| Failure::usage(format!("the MCP server URL is refused: {e}{}", hint(mcp))))?;
    let mut report = Report::default();
    report.json.insert("mcp".into(), json!(server_url.as_str()));
    walk(&server_url, fetcher, &mut report).await?;

    report.json.insert(
        "problems".into(),
        Value::Array(
            report
                .problems
                .iter()
                .map(|(what, fix)| json!({ "problem": what, "fix": fix }))
                .collect(),
        ),
    );
    if json_out {
        print_json(&Value::Object(report.json.clone()));
    } else {
        for fact in &report.facts {
            println!("ok: {fact}");
        }
        for (what, fix) in &report.problems {
            println!("problem: {what}\n  fix: {fix}");
        }
    }
    match report.problems.len() {
        0 => {
            if !json_out {
                println!(
                    "EMA is set up: the authorization server takes ID-JAGs for this MCP server"
                );
            }
            Ok(())
        }
        n => Err(Failure::new(
            Exit::Discovery,
            format!(
                "{n} discovery problem{} found (listed on stdout, each with its fix)",
                if n == 1 { "" } else { "s" }
            ),
        )),
    }
}

/// The `resource_metadata` a `401` Bearer challenge names.
fn challenge_metadata(probe: &FetchResponse) -> Option<String> {
    let header = probe.www_authenticate()?;
    let challenge = find_challenge(&header, "Bearer").ok()??;
    challenge.get("resource_metadata").map(str::to_owned)
}

async fn walk(server_url: &Url, fetcher: &HttpFetcher, report: &mut Report) -> Result<(), Failure> {
    // The probe: an unauthenticated request whose `401` names the metadata (CL-1).
    eprintln!("POST {server_url} (no token)");
    let probe = fetcher
        .post_json_unauthenticated(
            server_url,
            br#"{"jsonrpc":"2.0","id":"ema-discover","method":"ping"}"#.to_vec(),
        )
        .await
        .map_err(|e| network(server_url.as_str(), &e))?;
    let mut candidates = Vec::new();
    match (probe.status, challenge_metadata(&probe)) {
        (401, Some(named)) => {
            report.fact(format!(
                "the MCP server answers 401 with a Bearer challenge naming {named}"
            ));
            match fetcher.check_url("resource_metadata", &named) {
                Ok(url) => candidates.push(url),
                Err(e) => report.problem(
                    format!("the challenge's resource_metadata URL `{named}` is refused: {e}"),
                    "publish the protected-resource metadata at an https URL (MD-8)".into(),
                ),
            }
        }
        (status, _) => report.problem(
            format!(
                "the MCP server answered an unauthenticated request with HTTP {status} and no \
                 Bearer challenge naming `resource_metadata`"
            ),
            "answer requests without a token with 401 and `WWW-Authenticate: Bearer \
             resource_metadata=\"<PRM URL>\"` (RFC 9728 §5.1); clients fall back to the \
             well-known URLs"
                .into(),
        ),
    }
    candidates.extend(protected_resource_metadata_urls(server_url));
    let Some((prm_url, body)) = first_found(fetcher, &candidates).await? else {
        report.problem(
            format!(
                "no protected-resource metadata at {}",
                candidates
                    .iter()
                    .map(Url::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "serve RFC 9728 metadata at {} with `resource` and `authorization_servers`",
                protected_resource_metadata_urls(server_url)
                    .first()
                    .map_or("", Url::as_str)
            ),
        );
        return Ok(());
    };
    report
        .json
        .insert("resource_metadata_url".into(), json!(prm_url.as_str()));
    let prm = match ProtectedResourceMetadata::from_json(&body) {
        Ok(prm) => prm,
        Err(e) => {
            report.problem(
                format!("the protected-resource metadata at {prm_url} is not valid: {e}"),
                "serve a JSON object with `resource` and `authorization_servers` (RFC 9728 §2)"
                    .into(),
            );
            return Ok(());
        }
    };
    report.fact(format!(
        "protected-resource metadata at {prm_url}: resource `{}`, authorization servers [{}], \
         scopes [{}]",
        prm.resource,
        prm.authorization_servers.join(", "),
        prm.scopes_supported
            .as_deref()
            .unwrap_or_default()
            .join(" ")
    ));
    report.json.insert("resource".into(), json!(prm.resource));
    report
        .json
        .insert("scopes_supported".into(), json!(prm.scopes_supported));
    match prm.validate(server_url, fetcher.policy().url_policy()) {
        Ok(()) => {}
        Err(MetadataError::ResourceMismatch { found, used }) => report.problem(
            format!(
                "resource mismatch: the metadata's `resource` is `{found}`, but the MCP server \
                 was reached at `{used}` (D-9)"
            ),
            format!(
                "set `resource` in the protected-resource metadata to `{used}` (or a \
                 path prefix of it on the same origin)"
            ),
        ),
        Err(MetadataError::NoAuthorizationServers) => {
            report.problem(
                "the protected-resource metadata lists no authorization server (MD-6)".into(),
                "list the authorization server's issuer in `authorization_servers`".into(),
            );
            return Ok(());
        }
        Err(e) => report.problem(
            format!("the protected-resource metadata at {prm_url} is refused: {e}"),
            "use https URLs throughout the metadata (MD-8)".into(),
        ),
    }

    let mut servers = Vec::new();
    for issuer in &prm.authorization_servers {
        servers.push(authorization_server(issuer, fetcher, report).await?);
    }
    report
        .json
        .insert("authorization_servers".into(), Value::Array(servers));
    Ok(())
}

/// One authorization server: its metadata, issuer, grant profiles and keys.
async fn authorization_server(
    issuer: &str,
    fetcher: &HttpFetcher,
    report: &mut Report,
) -> Result<Value, Failure> {
    let mut out = serde_json::Map::new();
    out.insert("issuer".into(), json!(issuer));
    let issuer_url = match fetcher.check_url("authorization_servers", issuer) {
        Ok(url) => url,
        Err(e) => {
            report.problem(
                format!(
                    "the authorization server `{issuer}` is refused: {e}{}",
                    hint(issuer)
                ),
                "list the authorization server by its https issuer URL (MD-8)".into(),
            );
            return Ok(Value::Object(out));
        }
    };
    let candidates = authorization_server_metadata_urls(&issuer_url);
    let Some((url, body)) = first_found(fetcher, &candidates).await? else {
        report.problem(
            format!("no authorization-server metadata for `{issuer}`"),
            format!(
                "serve RFC 8414 metadata at {}",
                candidates.first().map_or("", Url::as_str)
            ),
        );
        return Ok(Value::Object(out));
    };
    out.insert("metadata_url".into(), json!(url.as_str()));
    let metadata = match AuthorizationServerMetadata::from_json(&body) {
        Ok(m) => m,
        Err(e) => {
            report.problem(
                format!("the authorization-server metadata at {url} is not valid: {e}"),
                "serve a JSON object per RFC 8414 §2".into(),
            );
            return Ok(Value::Object(out));
        }
    };
    let list = |l: &Option<Vec<String>>| l.as_deref().unwrap_or_default().join(", ");
    report.fact(format!(
        "authorization-server metadata at {url}: issuer `{}`, token endpoint {}, jwks_uri {}, \
         grant types [{}], grant profiles [{}], client auth [{}]",
        metadata.issuer,
        metadata.token_endpoint.as_deref().unwrap_or("(none)"),
        metadata.jwks_uri.as_deref().unwrap_or("(none)"),
        list(&metadata.grant_types_supported),
        list(&metadata.authorization_grant_profiles_supported),
        list(&metadata.token_endpoint_auth_methods_supported),
    ));
    out.insert("metadata".into(), metadata.to_json());
    if metadata.issuer != issuer {
        report.problem(
            format!(
                "issuer mismatch: the metadata at {url} names `{}`, but the protected-resource \
                 metadata lists `{issuer}` (MD-5)",
                metadata.issuer
            ),
            format!(
                "make the two agree exactly: list `{}` in `authorization_servers`, or set the \
                 authorization server's `issuer` to `{issuer}`",
                metadata.issuer
            ),
        );
    } else if let Err(e) = metadata.validate(issuer, fetcher.policy().url_policy()) {
        report.problem(
            format!("the authorization-server metadata at {url} is refused: {e}"),
            "publish a `token_endpoint` and https URLs throughout (RFC 8414, MD-8)".into(),
        );
    }
    if !metadata.supports_id_jag() {
        report.problem(
            format!(
                "no ID-JAG profile: `{issuer}` does not list `{ID_JAG_PROFILE}` in \
                 `authorization_grant_profiles_supported` (CL-3); EMA clients will not use it"
            ),
            format!(
                "enable Enterprise-Managed Authorization at the authorization server and list \
                 `{ID_JAG_PROFILE}` in `authorization_grant_profiles_supported` and \
                 `{JWT_BEARER}` in `grant_types_supported`"
            ),
        );
    } else if !metadata.is_md2_consistent() {
        report.problem(
            format!("`{issuer}` lists the ID-JAG profile but not the jwt-bearer grant type (MD-2)"),
            format!("add `{JWT_BEARER}` to `grant_types_supported`"),
        );
    }
    if metadata.jwks_uri.is_none() {
        report.problem(
            format!("`{issuer}` publishes no `jwks_uri`: nobody can verify its access tokens"),
            "publish the signing keys as a JWKS and name it in `jwks_uri`".into(),
        );
    }
    Ok(Value::Object(out))
}
