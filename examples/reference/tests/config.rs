//! The sample configuration files in `examples/config/` parse and build working servers, so the
//! documentation cannot drift from the code.

use std::path::PathBuf;
use std::sync::Arc;

use ema_examples::config::{
    self, AuthorizationServerConfig, ClientConfig, IdpConfig, McpServerConfig,
};
use ema_examples::servers;
use ema_grant::AuthMethod;
use ema_jose::SystemClock;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name)
}

#[test]
fn samples_parse_and_build() -> Result<(), Box<dyn std::error::Error>> {
    let idp: IdpConfig = config::load(&sample("idp.toml"))?;
    let auth: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    let mcp: McpServerConfig = config::load(&sample("mcp-server.toml"))?;
    assert_eq!(idp.users.len(), 2);
    assert_eq!(auth.resources.len(), 2);
    assert_eq!(mcp.path, "/mcp");
    let clock = Arc::new(SystemClock);
    let _ = servers::idp_app(&idp, "http://127.0.0.1:9400", clock.clone())?;
    let _ = servers::authorization_server_app(&auth, "http://127.0.0.1:9401", clock.clone())?;
    let _ = servers::mcp_app(&mcp, "http://127.0.0.1:9402", clock)?;
    Ok(())
}

#[test]
fn unknown_fields_are_refused() {
    let dir = std::env::temp_dir().join(format!("ema-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\npath = \"/mcp\"\nauthorization_server = \"x\"\ntypo = 1\n",
    )
    .ok();
    let result: Result<McpServerConfig, _> = config::load(&path);
    assert!(matches!(result, Err(config::ConfigError::Toml { .. })));
}

#[test]
fn samples_match_the_built_in_defaults() -> Result<(), Box<dyn std::error::Error>> {
    use ema_examples::config::defaults;
    let mcp = format!("{}/mcp", defaults::MCP);
    let notes = format!("{}/notes", defaults::MCP);
    let from_file: IdpConfig = config::load(&sample("idp.toml"))?;
    let built_in = defaults::idp(defaults::IDP, defaults::AS, &mcp, &notes);
    assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
    // `Debug` redacts secrets and passwords, so compare them on their own.
    assert_eq!(
        secrets_of(&from_file.clients),
        secrets_of(&built_in.clients)
    );
    let passwords =
        |c: &IdpConfig| -> Vec<String> { c.users.iter().map(|u| u.password.clone()).collect() };
    assert_eq!(passwords(&from_file), passwords(&built_in));
    let from_file: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    let built_in = defaults::authorization_server(defaults::IDP, defaults::AS, &mcp, &notes);
    assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
    assert_eq!(
        secrets_of(&from_file.clients),
        secrets_of(&built_in.clients)
    );
    let from_file: McpServerConfig = config::load(&sample("mcp-server.toml"))?;
    assert_eq!(
        format!("{from_file:?}"),
        format!("{:?}", defaults::mcp_server(defaults::AS, defaults::MCP))
    );
    Ok(())
}

fn secrets_of(clients: &[ClientConfig]) -> Vec<Option<String>> {
    clients.iter().map(|c| c.secret.clone()).collect()
}

/// The sample IdP configuration with its `[[clients]]` entry's method replaced by `line`.
fn idp_with_method_line(line: &str) -> Result<String, std::io::Error> {
    let text = std::fs::read_to_string(sample("idp.toml"))?;
    let replaced = text
        .lines()
        .map(|l| {
            if l.starts_with("token_endpoint_auth_method") {
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(replaced, text, "the sample sets token_endpoint_auth_method");
    Ok(replaced)
}

fn parse_idp(text: &str) -> Result<IdpConfig, config::ConfigError> {
    let dir = std::env::temp_dir().join(format!("ema-config-d24-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let path = dir.join(format!("idp-{}.toml", text.len()));
    std::fs::write(&path, text).ok();
    let parsed = config::load(&path);
    std::fs::remove_file(&path).ok();
    parsed
}

#[test]
fn d24_samples_name_one_auth_method_per_client() -> Result<(), Box<dyn std::error::Error>> {
    let idp: IdpConfig = config::load(&sample("idp.toml"))?;
    let auth: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    for c in idp.clients.iter().chain(&auth.clients) {
        assert_eq!(
            c.token_endpoint_auth_method,
            Some(AuthMethod::ClientSecretBasic),
            "{}",
            c.id
        );
    }
    Ok(())
}

/// The `token_endpoint_auth_methods_supported` of a server's RFC 8414 metadata.
async fn advertised(app: axum::Router) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    use tower::ServiceExt as _;
    let response = app
        .oneshot(
            http::Request::get("/.well-known/oauth-authorization-server")
                .body(axum::body::Body::empty())?,
        )
        .await?;
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let metadata: serde_json::Value = serde_json::from_slice(&body)?;
    let methods = metadata
        .get("token_endpoint_auth_methods_supported")
        .cloned()
        .unwrap_or_default();
    Ok(serde_json::from_value(methods)?)
}

#[tokio::test]
async fn d24_metadata_advertises_only_the_registered_methods()
-> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(SystemClock);
    let idp: IdpConfig = config::load(&sample("idp.toml"))?;
    let app = servers::idp_app(&idp, "http://127.0.0.1:9400", clock.clone())?;
    assert_eq!(advertised(app).await?, ["client_secret_basic"]);
    let auth: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    let app = servers::authorization_server_app(&auth, "http://127.0.0.1:9401", clock)?;
    assert_eq!(advertised(app).await?, ["client_secret_basic"]);
    Ok(())
}

#[tokio::test]
async fn d24_auth_method_is_read_and_checked() -> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(SystemClock);
    // Positive control: client_secret_post fits a secret.
    let post = parse_idp(&idp_with_method_line(
        "token_endpoint_auth_method = \"client_secret_post\"",
    )?)?;
    assert_eq!(
        post.clients[0].token_endpoint_auth_method,
        Some(AuthMethod::ClientSecretPost)
    );
    let app = servers::idp_app(&post, "http://127.0.0.1:9400", clock.clone())?;
    assert_eq!(advertised(app).await?, ["client_secret_post"]);
    // Absent: the credential's default.
    let absent = parse_idp(&idp_with_method_line("")?)?;
    assert_eq!(absent.clients[0].token_endpoint_auth_method, None);
    let app = servers::idp_app(&absent, "http://127.0.0.1:9400", clock.clone())?;
    assert_eq!(advertised(app).await?, ["client_secret_basic"]);
    // An unknown name is a clear configuration error naming the accepted ones.
    let unknown = parse_idp(&idp_with_method_line(
        "token_endpoint_auth_method = \"client_secret_jwt\"",
    )?);
    match unknown {
        Err(config::ConfigError::Toml { message, .. }) => {
            assert!(message.contains("client_secret_jwt"), "{message}");
            assert!(message.contains("client_secret_basic"), "{message}");
        }
        other => panic!("expected a TOML error, got {other:?}"),
    }
    // A method that does not fit the credential is refused when the server is built.
    for method in ["private_key_jwt", "none"] {
        let mismatch = parse_idp(&idp_with_method_line(&format!(
            "token_endpoint_auth_method = \"{method}\""
        ))?)?;
        match servers::idp_app(&mismatch, "http://127.0.0.1:9400", clock.clone()) {
            Err(config::ConfigError::Invalid(message)) => {
                assert!(message.contains(method), "{message}");
                assert!(message.contains("desk-idp-01"), "{message}");
            }
            Err(other) => panic!("expected an invalid-configuration error, got {other}"),
            Ok(_) => panic!("{method} with a secret was accepted"),
        }
    }
    Ok(())
}

#[test]
fn sec10_config_debug_hides_secrets_and_passwords() -> Result<(), Box<dyn std::error::Error>> {
    let idp: IdpConfig = config::load(&sample("idp.toml"))?;
    let auth: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    for text in [
        format!("{idp:?}"),
        format!("{idp:#?}"),
        format!("{auth:?}"),
        format!("{auth:#?}"),
    ] {
        for secret in ["desk-secret", "tc-secret", "ana-password", "bob-password"] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
        assert!(text.contains("<redacted>"), "{text}");
    }
    // The other fields stay visible.
    let text = format!("{idp:?}");
    for kept in ["desk-idp-01", "ana@acme.example", "ClientSecretBasic"] {
        assert!(text.contains(kept), "{kept} missing from {text}");
    }
    Ok(())
}
