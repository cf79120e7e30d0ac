//! The `[audit]` section the sample configurations show (commented out): uncommented, each
//! server writes a trail that verifies with the JWKS written beside it; the MCP server's key is
//! new at each start and the JWKS keeps the earlier ones; an IdP whose key is generated at start
//! cannot continue a trail signed by the previous run's key under the same `kid`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ema_examples::audit::jwks_path;
use ema_examples::config::{self, AuthorizationServerConfig, IdpConfig, McpServerConfig};
use ema_examples::keys::jwks_file;
use ema_examples::servers;
use ema_jose::SystemClock;
use ema_server::audit::Verifier;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sample `name` with its `[audit]` lines uncommented and the trail at `trail`.
fn with_audit<T: serde::de::DeserializeOwned>(
    name: &str,
    dir: &Path,
    trail: &Path,
) -> Result<T, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(sample(name))?;
    let mut found = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("# [audit]") || l.starts_with("# checkpoint_every") {
                found += 1;
                l.trim_start_matches("# ").to_owned()
            } else if l.starts_with("# file = ") {
                found += 1;
                format!("file = {:?}", trail.display().to_string())
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(found, 3, "{name} shows the [audit] section");
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n"))?;
    Ok(config::load(&path)?)
}

fn verify(trail: &Path) -> Result<(u64, usize), Box<dyn std::error::Error>> {
    let keys = jwks_file(&jwks_path(trail))?;
    let report = Verifier::new(keys.clone()).verify_file(trail)?;
    assert!(report.closed, "a stopped server closes its trail");
    Ok((report.events, keys.keys().len()))
}

#[test]
fn each_server_writes_a_trail_that_verifies_with_the_jwks_beside_it()
-> Result<(), Box<dyn std::error::Error>> {
    let dir =
        TempDir(std::env::temp_dir().join(format!("ema-examples-audit-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    let clock = Arc::new(SystemClock);
    let (idp_trail, as_trail, mcp_trail) = (
        dir.0.join("idp.jsonl"),
        dir.0.join("as.jsonl"),
        dir.0.join("mcp.jsonl"),
    );

    // Positive control: the samples as shipped write nothing.
    let plain: McpServerConfig = config::load(&sample("mcp-server.toml"))?;
    assert!(plain.audit.is_none());

    let idp: IdpConfig = with_audit("idp.toml", &dir.0, &idp_trail)?;
    let auth: AuthorizationServerConfig =
        with_audit("authorization-server.toml", &dir.0, &as_trail)?;
    let mcp: McpServerConfig = with_audit("mcp-server.toml", &dir.0, &mcp_trail)?;
    assert_eq!(mcp.audit.as_ref().map(|a| a.checkpoint_every), Some(1000));
    drop(servers::idp_app(
        &idp,
        "http://127.0.0.1:9400",
        clock.clone(),
    )?);
    drop(servers::authorization_server_app(
        &auth,
        "http://127.0.0.1:9401",
        clock.clone(),
    )?);
    drop(servers::mcp_app(
        &mcp,
        "http://127.0.0.1:9402",
        clock.clone(),
    )?);
    for trail in [&idp_trail, &as_trail, &mcp_trail] {
        assert_eq!(verify(trail)?, (0, 1), "{}", trail.display());
    }
    // The IdP signs its checkpoints with its signing key (kid `idp-k1`).
    let idp_keys = jwks_file(&jwks_path(&idp_trail))?;
    assert_eq!(idp_keys.keys()[0].kid(), Some("idp-k1"));

    // The MCP server restarts with a new key: the trail continues, both keys verify it.
    drop(servers::mcp_app(
        &mcp,
        "http://127.0.0.1:9402",
        clock.clone(),
    )?);
    assert_eq!(verify(&mcp_trail)?, (0, 2));

    // The IdP's key is generated at each start under the same kid: refused, the trail intact.
    let again = servers::idp_app(&idp, "http://127.0.0.1:9400", clock);
    let err = again.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("idp-k1") && err.contains("pem_file"), "{err}");
    assert_eq!(verify(&idp_trail)?, (0, 1));
    Ok(())
}
