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
    let authorizations = |c: &AuthorizationServerConfig| -> Vec<String> {
        c.ssf
            .iter()
            .flat_map(|s| s.transmitters.iter().map(|t| t.authorization.clone()))
            .collect()
    };
    assert_eq!(authorizations(&from_file), authorizations(&built_in));
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
        // The code flow's public client says `none`; every client with a secret, basic.
        let expected = if c.secret.is_some() {
            AuthMethod::ClientSecretBasic
        } else {
            AuthMethod::None
        };
        assert_eq!(c.token_endpoint_auth_method, Some(expected), "{}", c.id);
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
    let app = servers::authorization_server_app(&auth, "http://127.0.0.1:9401", clock.clone())?;
    // The code flow's public client (and metadata-document clients) redeem codes with `none`.
    assert_eq!(advertised(app).await?, ["client_secret_basic", "none"]);
    // Without the code flow, only the registered secret method.
    let mut without = auth.clone();
    without.code_flow = None;
    without
        .clients
        .retain(|c| c.token_endpoint_auth_method != Some(AuthMethod::None));
    let app = servers::authorization_server_app(&without, "http://127.0.0.1:9401", clock)?;
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
        for secret in [
            "desk-secret",
            "tc-secret",
            "ana-password",
            "bob-password",
            "idp-ssf-dev-secret",
            "tasks-as-rp-secret",
        ] {
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

/// The authorization server's RFC 8414 metadata, as served.
async fn metadata_of(app: axum::Router) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    use tower::ServiceExt as _;
    let response = app
        .oneshot(
            http::Request::get("/.well-known/oauth-authorization-server")
                .body(axum::body::Body::empty())?,
        )
        .await?;
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// Issue 14: the sample's `[code_flow]` is advertised beside the ID-JAG profile, and without
/// it the metadata names the jwt-bearer grant only.
#[tokio::test]
async fn code_flow_section_is_advertised_and_optional() -> Result<(), Box<dyn std::error::Error>> {
    let auth: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    let url = "http://127.0.0.1:9401";
    let app = servers::authorization_server_app(&auth, url, Arc::new(SystemClock))?;
    let meta = metadata_of(app).await?;
    assert_eq!(meta["authorization_endpoint"], format!("{url}/authorize"));
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let grants = meta["grant_types_supported"].to_string();
    assert!(
        grants.contains("authorization_code") && grants.contains("jwt-bearer"),
        "{grants}"
    );
    assert!(meta["authorization_grant_profiles_supported"].is_array());
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    // D-24: the code flow's public clients redeem codes with `none`.
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "none"])
    );
    // RS-8: introspection for confidential clients.
    assert_eq!(meta["introspection_endpoint"], format!("{url}/introspect"));
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic"])
    );
    let mut without = auth.clone();
    without.code_flow = None;
    let meta = metadata_of(servers::authorization_server_app(
        &without,
        url,
        Arc::new(SystemClock),
    )?)
    .await?;
    assert!(meta.get("authorization_endpoint").is_none());
    assert!(
        !meta["grant_types_supported"]
            .to_string()
            .contains("authorization_code")
    );
    Ok(())
}

/// `[code_flow]` errors are named: an IdP that is not trusted, a lifetime out of range; the
/// IdP's `sign_in_client` must be one of its clients.
#[test]
fn code_flow_settings_are_checked() -> Result<(), Box<dyn std::error::Error>> {
    let auth: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    let url = "http://127.0.0.1:9401";
    let clock = Arc::new(SystemClock);
    assert!(servers::authorization_server_app(&auth, url, clock.clone()).is_ok());
    let mut bad = auth.clone();
    if let Some(code) = bad.code_flow.as_mut() {
        code.idp = "http://127.0.0.1:9999".into();
    }
    let err = servers::authorization_server_app(&bad, url, clock.clone()).unwrap_err();
    assert!(
        err.to_string().contains("not one of [[trusted_issuers]]"),
        "{err}"
    );
    let mut bad = auth.clone();
    if let Some(code) = bad.code_flow.as_mut() {
        code.code_lifetime_secs = 601;
    }
    let err = servers::authorization_server_app(&bad, url, clock.clone()).unwrap_err();
    assert!(err.to_string().contains("code_lifetime_secs"), "{err}");
    let idp: IdpConfig = config::load(&sample("idp.toml"))?;
    assert!(servers::idp_app(&idp, "http://127.0.0.1:9400", clock.clone()).is_ok());
    let mut bad = idp.clone();
    bad.targets[0].sign_in_client = Some("nobody".into());
    let err = servers::idp_app(&bad, "http://127.0.0.1:9400", clock).unwrap_err();
    assert!(err.to_string().contains("sign_in_client `nobody`"), "{err}");
    Ok(())
}

// ----- the settings of issue 9: bad values are clear errors, good ones take effect -----

mod settings {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test helpers outside #[test] functions may unwrap and panic"
    )]

    use std::sync::Arc;

    use axum::body::Body;
    use ema_examples::config::{self, ConfigError, defaults};
    use ema_examples::servers;
    use ema_grant::AccessTokenIssuer;
    use ema_id_jag::{ClientId, Issuer, Resource, ScopeSet};
    use ema_jose::{Algorithm, Clock, FixedClock, KeyRing, SigningKey, UnixTime};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

    fn clock() -> Arc<dyn Clock> {
        Arc::new(FixedClock(NOW))
    }

    fn idp() -> config::IdpConfig {
        defaults::idp(
            defaults::IDP,
            defaults::AS,
            &format!("{}/mcp", defaults::MCP),
            &format!("{}/notes", defaults::MCP),
        )
    }

    fn auth_server() -> config::AuthorizationServerConfig {
        defaults::authorization_server(
            defaults::IDP,
            defaults::AS,
            &format!("{}/mcp", defaults::MCP),
            &format!("{}/notes", defaults::MCP),
        )
    }

    fn mcp() -> config::McpServerConfig {
        defaults::mcp_server(defaults::AS, defaults::MCP)
    }

    /// The message of a configuration error, or a failure when there was none.
    fn invalid<T>(result: Result<T, ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid(message)) => message,
            Err(other) => panic!("expected an invalid value, got {other}"),
            Ok(_) => panic!("expected an invalid value, got a server"),
        }
    }

    fn idp_error(cfg: &config::IdpConfig) -> String {
        invalid(servers::idp_app(cfg, defaults::IDP, clock()))
    }

    fn as_error(cfg: &config::AuthorizationServerConfig) -> String {
        invalid(servers::authorization_server_app(
            cfg,
            defaults::AS,
            clock(),
        ))
    }

    fn mcp_error(cfg: &config::McpServerConfig) -> String {
        invalid(servers::mcp_app(cfg, defaults::MCP, clock()))
    }

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    async fn get(app: &axum::Router, path: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[test]
    fn d7_out_of_range_times_are_config_errors() {
        for secs in [61, 3600, u64::MAX] {
            let mut cfg = idp();
            cfg.leeway_secs = secs;
            let message = idp_error(&cfg);
            assert!(
                message.contains("leeway_secs") && message.contains("at most 60"),
                "{message}"
            );
            let mut cfg = auth_server();
            cfg.leeway_secs = secs;
            assert!(as_error(&cfg).contains("leeway_secs"));
            let mut cfg = mcp();
            cfg.leeway_secs = secs;
            assert!(mcp_error(&cfg).contains("leeway_secs"));
        }
        for secs in [0, 3601, u64::MAX] {
            let mut cfg = idp();
            cfg.id_jag_lifetime_secs = secs;
            let message = idp_error(&cfg);
            assert!(
                message.contains("id_jag_lifetime_secs") && message.contains("1 to 3600"),
                "{message}"
            );
        }
        // RV-24: never more than an hour.
        for secs in [0, 3601, 86_400, u64::MAX] {
            let mut cfg = auth_server();
            cfg.token_lifetime_secs = secs;
            let message = as_error(&cfg);
            assert!(
                message.contains("token_lifetime_secs") && message.contains("1 to 3600"),
                "{message}"
            );
        }
        // Positive controls: the edges of each range build.
        let mut cfg = idp();
        (cfg.leeway_secs, cfg.id_jag_lifetime_secs) = (60, 3600);
        assert!(servers::idp_app(&cfg, defaults::IDP, clock()).is_ok());
        cfg.id_jag_lifetime_secs = 1;
        assert!(servers::idp_app(&cfg, defaults::IDP, clock()).is_ok());
        let mut cfg = auth_server();
        (cfg.leeway_secs, cfg.token_lifetime_secs) = (0, 3600);
        assert!(servers::authorization_server_app(&cfg, defaults::AS, clock()).is_ok());
        let mut cfg = mcp();
        cfg.leeway_secs = 60;
        assert!(servers::mcp_app(&cfg, defaults::MCP, clock()).is_ok());
    }

    #[test]
    fn d7_out_of_range_times_in_toml_are_errors_too() {
        let dir = std::env::temp_dir().join(format!("ema-config-d7-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mcp.toml");
        // Negative numbers do not parse as seconds at all.
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\nauthorization_server = \"x\"\nleeway_secs = -1\n",
        )
        .unwrap();
        let result: Result<config::McpServerConfig, _> = config::load(&path);
        assert!(matches!(result, Err(ConfigError::Toml { .. })));
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\nauthorization_server = \"x\"\nleeway_secs = 90\n",
        )
        .unwrap();
        let cfg: config::McpServerConfig = config::load(&path).unwrap();
        assert!(mcp_error(&cfg).contains("leeway_secs = 90"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn redis_settings_are_checked() {
        // A shared replay store only with a Redis URL the client understands and a sane prefix
        // (and inside a runtime, as the servers are).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let guard = runtime.enter();
        for (url, prefix, why) in [
            (Some("http://127.0.0.1:6379/"), None, "invalid Redis URL"),
            (
                Some("redis://127.0.0.1:6379/"),
                Some("a b"),
                "invalid Redis key prefix",
            ),
            (
                Some("redis://127.0.0.1:6379/"),
                Some(""),
                "invalid Redis key prefix",
            ),
            (None, Some("ema"), "redis_prefix is set without redis_url"),
        ] {
            let mut cfg = auth_server();
            cfg.redis_url = url.map(str::to_owned);
            cfg.redis_prefix = prefix.map(str::to_owned);
            let message = as_error(&cfg);
            assert!(message.contains(why), "{message}");
        }
        // Positive controls: the connection is lazy, so a server builds while Redis is down
        // (its token requests fail closed with 503 until Redis answers).
        for (url, prefix) in [
            ("redis://127.0.0.1:6379/", None),
            ("redis+unix:///nonexistent/redis.sock", Some("tasks-as")),
        ] {
            let mut cfg = auth_server();
            cfg.redis_url = Some(url.to_owned());
            cfg.redis_prefix = prefix.map(str::to_owned);
            assert!(servers::authorization_server_app(&cfg, defaults::AS, clock()).is_ok());
            let mut cfg = mcp();
            cfg.redis_url = Some(url.to_owned());
            cfg.redis_prefix = prefix.map(str::to_owned);
            assert!(servers::mcp_app(&cfg, defaults::MCP, clock()).is_ok());
        }
        // Redis Cluster: some nodes instead of the URL, never both, never none; lazy as well.
        let nodes = vec![
            "redis://127.0.0.1:7000/".to_owned(),
            "redis://127.0.0.1:7001/".into(),
        ];
        for (url, cluster, why) in [
            (
                Some("redis://127.0.0.1:6379/"),
                Some(nodes.clone()),
                "set redis_url or redis_cluster, not both",
            ),
            (
                None,
                Some(Vec::new()),
                "redis_cluster: name at least one node",
            ),
            (
                None,
                Some(vec!["http://127.0.0.1:7000/".into()]),
                "invalid Redis URL",
            ),
        ] {
            let mut cfg = auth_server();
            cfg.redis_url = url.map(str::to_owned);
            cfg.redis_cluster = cluster.clone();
            let message = as_error(&cfg);
            assert!(message.contains(why), "{message}");
            let mut cfg = mcp();
            cfg.redis_url = url.map(str::to_owned);
            cfg.redis_cluster = cluster;
            let message = mcp_error(&cfg);
            assert!(message.contains(why), "{message}");
        }
        let mut cfg = auth_server();
        cfg.redis_cluster = Some(nodes.clone());
        cfg.redis_prefix = Some("tasks-as".into());
        assert!(servers::authorization_server_app(&cfg, defaults::AS, clock()).is_ok());
        let mut cfg = mcp();
        cfg.redis_cluster = Some(nodes);
        assert!(servers::mcp_app(&cfg, defaults::MCP, clock()).is_ok());
        let mut cfg = mcp();
        cfg.redis_prefix = Some("ema".into());
        assert!(mcp_error(&cfg).contains("redis_prefix is set without redis_url"));
        let mut cfg = mcp();
        cfg.redis_url = Some("http://127.0.0.1:6379/".into());
        assert!(mcp_error(&cfg).contains("invalid Redis URL"));
        // Outside a runtime: an error, not a panic.
        drop(guard);
        let mut cfg = auth_server();
        cfg.redis_url = Some("redis://127.0.0.1:6379/".into());
        assert!(as_error(&cfg).contains("Tokio runtime"));
    }

    async fn post_status(app: &axum::Router, path: &str) -> StatusCode {
        app.clone()
            .oneshot(
                Request::post(path)
                    .header("content-type", "application/secevent+jwt")
                    .header("authorization", "Bearer not-the-idp")
                    .body(Body::from("x.y.z"))
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
    }

    // RV-4, RV-5, RV-7: `[ssf]` is checked at startup; each bad value names its setting.
    #[tokio::test]
    async fn rv4_ssf_settings_are_checked() {
        type Edit = fn(&mut config::AsSsfConfig);
        let rows: &[(Edit, &str)] = &[
            (|s| s.push_path = Some("ssf".into()), "ssf.push_path `ssf`"),
            (|s| s.push_path = Some("/ssf?x".into()), "ssf.push_path"),
            (
                |s| s.push_path = Some("/token".into()),
                "ssf.push_path `/token` is already",
            ),
            (
                |s| s.push_path = Some("/revoke".into()),
                "ssf.push_path `/revoke` is already",
            ),
            (
                |s| s.transmitters.clear(),
                "ssf.transmitters: name at least one",
            ),
            (
                |s| s.transmitters[0].authorization = " ".into(),
                "ssf.transmitters[0].authorization is empty",
            ),
            (
                |s| {
                    let mut twin = s.transmitters[0].clone();
                    twin.issuer = "http://127.0.0.1:9499".into();
                    s.transmitters.push(twin);
                },
                "ssf.transmitters[1].authorization is another transmitter's",
            ),
            (
                |s| s.transmitters[0].algorithms = names(&["ES384"]),
                "ssf.transmitters[0].algorithms: ES384 is not allowed for SETs",
            ),
            (
                |s| s.transmitters[0].algorithms = names(&["HS256"]),
                "ssf.transmitters[0].algorithms: unknown algorithm `HS256`",
            ),
            (
                |s| s.transmitters[0].jwks_url = None,
                "ssf.transmitters[0] needs one of",
            ),
            (
                |s| s.transmitters[0].jwks = Some("{}".into()),
                "ssf.transmitters[0] needs exactly one of",
            ),
            (
                |s| s.transmitters[0].subject_issuers = Some(Vec::new()),
                "ssf.transmitters[0].subject_issuers",
            ),
            (
                |s| s.transmitters[0].tenant = Some(String::new()),
                "ssf.transmitters[0].tenant is empty",
            ),
            (
                |s| {
                    s.transmitters[0].emails =
                        Some([("nobody".to_owned(), "00u1".to_owned())].into())
                },
                "ssf.transmitters[0].emails: `nobody`",
            ),
            (
                |s| s.transmitters[0].issuer.clear(),
                "ssf.transmitters[0].issuer is empty",
            ),
            // RV-26: stream verification settings.
            (
                |s| s.transmitters[0].receiver_authorization = None,
                "ssf.transmitters[0]: stream_id and receiver_authorization go together",
            ),
            (
                |s| s.transmitters[0].verify_every_secs = Some(0),
                "ssf.transmitters[0].verify_every_secs must be 1 to 900",
            ),
            (
                |s| s.transmitters[0].verify_every_secs = Some(901),
                "ssf.transmitters[0].verify_every_secs must be 1 to 900",
            ),
            (
                |s| s.transmitters[0].configuration_url = Some("nope".into()),
                "ssf.transmitters[0].configuration_url `nope`",
            ),
            // RV-27: poll settings.
            (
                |s| s.transmitters[0].poll_url = Some("ftp://127.0.0.1/poll".into()),
                "ssf.transmitters[0].poll_url `ftp://127.0.0.1/poll`: use an http or https URL",
            ),
            (
                |s| {
                    let t = &mut s.transmitters[0];
                    t.poll_url = Some("http://127.0.0.1:9400/ssf/poll".into());
                    t.stream_id = None;
                    t.receiver_authorization = None;
                },
                "ssf.transmitters[0].poll_url needs receiver_authorization",
            ),
        ];
        for (edit, why) in rows {
            let mut cfg = auth_server();
            edit(cfg.ssf.as_mut().unwrap());
            let message = as_error(&cfg);
            assert!(message.contains(why), "{why}: {message}");
        }
        // Controls: the defaults mount the receiver at /ssf/events (a push without the IdP's
        // Authorization is 401); a custom path moves it; without [ssf] there is none.
        let app = servers::authorization_server_app(&auth_server(), defaults::AS, clock()).unwrap();
        assert_eq!(
            post_status(&app, "/ssf/events").await,
            StatusCode::UNAUTHORIZED
        );
        // RV-21: the GTR endpoint is mounted and advertised.
        assert_eq!(
            post_status(&app, "/global-token-revocation").await,
            StatusCode::UNAUTHORIZED
        );
        let (_, metadata) = get(&app, "/.well-known/oauth-authorization-server").await;
        assert_eq!(
            metadata["global_token_revocation_endpoint"],
            format!("{}/global-token-revocation", defaults::AS)
        );
        let mut cfg = auth_server();
        cfg.ssf.as_mut().unwrap().push_path = Some("/signals/push".into());
        let app = servers::authorization_server_app(&cfg, defaults::AS, clock()).unwrap();
        assert_eq!(
            post_status(&app, "/signals/push").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post_status(&app, "/ssf/events").await,
            StatusCode::NOT_FOUND
        );
        let mut cfg = auth_server();
        cfg.ssf = None;
        let app = servers::authorization_server_app(&cfg, defaults::AS, clock()).unwrap();
        assert_eq!(
            post_status(&app, "/ssf/events").await,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn d26_algorithm_names_are_checked() {
        for (list, why) in [
            (&["HS256"][..], "unknown algorithm `HS256`"),
            (&["none"][..], "unknown algorithm `none`"),
            (&["ES256", "es384"][..], "unknown algorithm `es384`"),
            (&[][..], "the list is empty"),
        ] {
            let mut cfg = auth_server();
            cfg.trusted_issuers[0].algorithms = names(list);
            let message = as_error(&cfg);
            assert!(
                message.contains(why) && message.contains("trusted issuer"),
                "{message}"
            );
            let mut cfg = mcp();
            cfg.algorithms = names(list);
            let message = mcp_error(&cfg);
            assert!(
                message.contains(why) && message.contains("algorithms"),
                "{message}"
            );
            let mut cfg = idp();
            cfg.id_token_algorithms = names(list);
            let message = idp_error(&cfg);
            assert!(
                message.contains(why) && message.contains("id_token_algorithms"),
                "{message}"
            );
        }
        // The IdP must accept its own ID tokens.
        let mut cfg = idp();
        cfg.id_token_algorithms = names(&["EdDSA", "RS256"]);
        let message = idp_error(&cfg);
        assert!(
            message.contains("ES256") && message.contains("signing_key"),
            "{message}"
        );
        // Positive controls: opting in to ES384 beside the defaults builds.
        let list = names(&["ES256", "ES384", "RS256", "PS256", "EdDSA"]);
        let mut cfg = idp();
        cfg.id_token_algorithms = list.clone();
        assert!(servers::idp_app(&cfg, defaults::IDP, clock()).is_ok());
        let mut cfg = auth_server();
        cfg.trusted_issuers[0].algorithms = list.clone();
        assert!(servers::authorization_server_app(&cfg, defaults::AS, clock()).is_ok());
        let mut cfg = mcp();
        cfg.algorithms = list;
        assert!(servers::mcp_app(&cfg, defaults::MCP, clock()).is_ok());
    }

    #[test]
    fn endpoint_paths_must_be_plain_and_distinct() {
        for (token, jwks, authorize, why) in [
            ("token", "/jwks", "/authorize", "must start with `/`"),
            ("/token?x=1", "/jwks", "/authorize", "query or fragment"),
            ("/token", "/jwks#k", "/authorize", "query or fragment"),
            ("/token", "/jwks", "/token", "share the path `/token`"),
            ("/.well-known/token", "/jwks", "/authorize", "well-known"),
            ("/{x}", "/jwks", "/authorize", "only letters"),
        ] {
            let mut cfg = idp();
            cfg.endpoints.token = token.into();
            cfg.endpoints.jwks = jwks.into();
            cfg.endpoints.authorize = authorize.into();
            let message = idp_error(&cfg);
            assert!(
                message.contains("[endpoints]") && message.contains(why),
                "{message}"
            );
        }
        let mut cfg = auth_server();
        cfg.endpoints.jwks = "/token".into();
        let message = as_error(&cfg);
        assert!(message.contains("share the path `/token`"), "{message}");
        cfg.endpoints.jwks = "keys".into();
        assert!(as_error(&cfg).contains("jwks path `keys` must start with `/`"));
    }

    #[tokio::test]
    async fn endpoint_paths_are_served_and_published() {
        let mut cfg = idp();
        cfg.endpoints.token = "/oauth2/v1/token".into();
        cfg.endpoints.jwks = "/oauth2/v1/keys".into();
        cfg.endpoints.authorize = "/oauth2/v1/authorize".into();
        cfg.signing_key.alg = "EdDSA".into();
        let app = servers::idp_app(&cfg, defaults::IDP, clock()).unwrap();
        for well_known in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let (status, meta) = get(&app, well_known).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                meta["token_endpoint"],
                format!("{}/oauth2/v1/token", defaults::IDP)
            );
            assert_eq!(
                meta["jwks_uri"],
                format!("{}/oauth2/v1/keys", defaults::IDP)
            );
            assert_eq!(
                meta["authorization_endpoint"],
                format!("{}/oauth2/v1/authorize", defaults::IDP)
            );
            // D-26: the algorithm the IdP actually signs ID tokens with, not a fixed list.
            assert_eq!(
                meta["id_token_signing_alg_values_supported"],
                serde_json::json!(["EdDSA"])
            );
        }
        let (status, jwks) = get(&app, "/oauth2/v1/keys").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(jwks["keys"][0]["kid"], "idp-k1");
        assert_eq!(get(&app, "/jwks").await.0, StatusCode::NOT_FOUND);
        let resp = app
            .clone()
            .oneshot(
                Request::post("/oauth2/v1/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from("grant_type=nope"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::BAD_REQUEST,
            "the token endpoint answers there"
        );
        // The default IdP publishes ES256, its default key's algorithm.
        let app = servers::idp_app(&idp(), defaults::IDP, clock()).unwrap();
        let (_, meta) = get(&app, "/.well-known/openid-configuration").await;
        assert_eq!(
            meta["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256"])
        );

        let mut cfg = auth_server();
        cfg.endpoints.token = "/oauth2/v1/token".into();
        cfg.endpoints.jwks = "/oauth2/v1/keys".into();
        let app = servers::authorization_server_app(&cfg, defaults::AS, clock()).unwrap();
        let (status, meta) = get(&app, "/.well-known/oauth-authorization-server").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            meta["token_endpoint"],
            format!("{}/oauth2/v1/token", defaults::AS)
        );
        assert_eq!(meta["jwks_uri"], format!("{}/oauth2/v1/keys", defaults::AS));
        assert_eq!(get(&app, "/oauth2/v1/keys").await.0, StatusCode::OK);
        assert_eq!(get(&app, "/jwks").await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn key_sources_are_exactly_one() {
        let jwks = KeyRing::new(SigningKey::generate(Algorithm::ES256, Some("k".into())).unwrap())
            .jwks()
            .to_public_json()
            .to_string();
        let mut cfg = auth_server();
        cfg.trusted_issuers[0].jwks = Some(jwks.clone());
        assert!(as_error(&cfg).contains("exactly one of `jwks_url`, `jwks_file` and `jwks`"));
        cfg.trusted_issuers[0].jwks_url = None;
        assert!(servers::authorization_server_app(&cfg, defaults::AS, clock()).is_ok());
        cfg.trusted_issuers[0].jwks = None;
        assert!(as_error(&cfg).contains("needs one of"));
        cfg.trusted_issuers[0].jwks = Some("{\"keys\": 7}".into());
        assert!(as_error(&cfg).contains("inline `jwks`"));
        let mut cfg = mcp();
        cfg.jwks_url = Some(format!("{}/jwks", defaults::AS));
        cfg.jwks = Some(jwks.clone());
        assert!(mcp_error(&cfg).contains("exactly one"));
        cfg.jwks_url = None;
        assert!(servers::mcp_app(&cfg, defaults::MCP, clock()).is_ok());
        cfg.jwks = Some("not json".into());
        assert!(mcp_error(&cfg).contains("inline `jwks`"));
    }

    #[test]
    fn scope_lists_hold_one_scope_per_string() {
        let mut cfg = mcp();
        cfg.scopes
            .tools
            .insert("add_task".into(), vec!["tasks.read tasks.write".into()]);
        let message = mcp_error(&cfg);
        assert!(
            message.contains("scopes.tools.add_task") && message.contains("not a single scope"),
            "{message}"
        );
        let mut cfg = mcp();
        cfg.scopes.default = vec![String::new()];
        assert!(mcp_error(&cfg).contains("scopes.default"));
    }

    #[test]
    fn rs6_tool_scopes_for_a_tool_the_server_lacks_are_refused() {
        // Fail closed: a misspelt tool would otherwise leave the real one open.
        let mut cfg = mcp();
        cfg.scopes
            .tools
            .insert("add_tsak".into(), vec!["tasks.write".into()]);
        let message = mcp_error(&cfg);
        assert!(message.contains("`add_tsak`"), "{message}");
        // Positive control: the real tool name is accepted.
        let mut cfg = mcp();
        cfg.scopes
            .tools
            .insert("list_tasks".into(), vec!["tasks.read".into()]);
        assert!(servers::mcp_app(&cfg, defaults::MCP, clock()).is_ok());
    }

    /// An access token from the default authorization server for the default MCP resource.
    fn access_token(keys: &Arc<KeyRing>, scope: Option<&str>) -> String {
        let issuer = AccessTokenIssuer::new(Issuer::new(defaults::AS), keys.clone());
        let mut claims = issuer
            .claims(
                "u-17".into(),
                Resource::new(format!("{}/mcp", defaults::MCP)),
                ClientId::new("tc_5f2a91"),
                NOW,
            )
            .unwrap();
        claims.scope = scope.map(|s| ScopeSet::parse(s).unwrap());
        issuer.sign(&claims).unwrap()
    }

    async fn post_mcp(
        app: &axum::Router,
        token: &str,
        session: Option<&str>,
        body: &str,
    ) -> (StatusCode, Option<String>, String) {
        let mut req = Request::post("/mcp")
            .header("host", "127.0.0.1:9402")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {token}"));
        if let Some(session) = session {
            req = req.header("mcp-session-id", session);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let detail = challenge.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        (status, session, detail)
    }

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"config-test","version":"1"}}}"#;
    const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#;

    #[tokio::test]
    async fn d20_reference_mcp_server_lets_a_scopeless_token_initialize() {
        // Keys inline in the configuration; ES384 only once opted in (D-26).
        let keys = Arc::new(KeyRing::new(
            SigningKey::generate(Algorithm::ES384, Some("as-k1".into())).unwrap(),
        ));
        let mut cfg = mcp();
        cfg.jwks = Some(keys.jwks().to_public_json().to_string());
        cfg.algorithms = names(&["ES256", "ES384"]);
        let app = servers::mcp_app(&cfg, defaults::MCP, clock()).unwrap();
        let bare = access_token(&keys, None);
        let (status, session, detail) = post_mcp(&app, &bare, None, INITIALIZE).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "D-20: initialize needs no scope: {detail}"
        );
        let session = session.expect("a session id");
        let (status, _, challenge) = post_mcp(&app, &bare, Some(&session), TOOLS_LIST).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "RS-6");
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"tasks.read\""), "{challenge}");
        // Positive control: tasks.read lists the tools in the same kind of session.
        let read = access_token(&keys, Some("tasks.read"));
        let (status, session, _) = post_mcp(&app, &read, None, INITIALIZE).await;
        assert_eq!(status, StatusCode::OK);
        let session = session.expect("a session id");
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let (status, _, _) = post_mcp(&app, &read, Some(&session), initialized).await;
        assert!(status.is_success(), "{status}");
        let (status, _, _) = post_mcp(&app, &read, Some(&session), TOOLS_LIST).await;
        assert_eq!(status, StatusCode::OK);
        // D-26: the configured list is what counts; an ES256-only list refuses the same token.
        cfg.algorithms = names(&["ES256"]);
        let strict = servers::mcp_app(&cfg, defaults::MCP, clock()).unwrap();
        let (status, _, challenge) = post_mcp(&strict, &read, None, INITIALIZE).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }
}

/// The agent's sample (`examples/config/agent.toml`) is its built-in development configuration,
/// secrets and password included; a partial file keeps the defaults it leaves out.
#[test]
fn agent_sample_matches_the_built_in_defaults() -> Result<(), Box<dyn std::error::Error>> {
    use ema_examples::config::{AgentConfig, defaults};
    let from_file: AgentConfig = config::load(&sample("agent.toml"))?;
    let built_in = defaults::agent();
    assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
    // `Debug` redacts secrets and the password, so compare them on their own.
    let secrets = |c: &AgentConfig| {
        (
            c.idp_client.secret.clone(),
            c.as_client.secret.clone(),
            c.user.password.clone(),
        )
    };
    assert_eq!(secrets(&from_file), secrets(&built_in));
    assert!(!format!("{from_file:?}").contains("desk-secret"));
    assert!(!format!("{from_file:?}").contains("ana-password"));
    // D-24: one method per client, the ones the sample servers register.
    for c in [&from_file.idp_client, &from_file.as_client] {
        assert_eq!(c.method(), AuthMethod::ClientSecretBasic);
        assert_eq!(c.credentials("x")?.auth().method(), "client_secret_basic");
    }

    let dir = std::env::temp_dir().join(format!("ema-config-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let partial = dir.join("partial.toml");
    std::fs::write(
        &partial,
        "mcp = \"http://127.0.0.1:9999/mcp\"\n[as_client]\nid = \"other\"\nsecret = \"s\"\ntoken_endpoint_auth_method = \"client_secret_post\"\n",
    )?;
    let partial: AgentConfig = config::load(&partial)?;
    assert_eq!(partial.mcp, "http://127.0.0.1:9999/mcp");
    assert_eq!(partial.idp, built_in.idp);
    assert_eq!(partial.user.username, "ana");
    assert_eq!(
        partial.as_client.credentials("as_client")?.auth().method(),
        "client_secret_post"
    );
    // private_key_jwt without a key file is a configuration error naming the table.
    let keyless = dir.join("keyless.toml");
    std::fs::write(
        &keyless,
        "[as_client]\nid = \"tc\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\n",
    )?;
    let keyless: AgentConfig = config::load(&keyless)?;
    let err = keyless.as_client.credentials("as_client").unwrap_err();
    assert!(err.to_string().contains("[as_client]"), "{err}");
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "idp_url = \"http://x\"\n")?;
    assert!(matches!(
        config::load::<AgentConfig>(&typo),
        Err(config::ConfigError::Toml { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
