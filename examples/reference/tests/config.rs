//! The sample configuration files in `examples/config/` parse and build working servers, so the
//! documentation cannot drift from the code.

use std::path::PathBuf;
use std::sync::Arc;

use ema_examples::config::{self, AuthorizationServerConfig, IdpConfig, McpServerConfig};
use ema_examples::servers;
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
    let from_file: AuthorizationServerConfig = config::load(&sample("authorization-server.toml"))?;
    let built_in = defaults::authorization_server(defaults::IDP, defaults::AS, &mcp, &notes);
    assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
    let from_file: McpServerConfig = config::load(&sample("mcp-server.toml"))?;
    assert_eq!(
        format!("{from_file:?}"),
        format!("{:?}", defaults::mcp_server(defaults::AS, defaults::MCP))
    );
    Ok(())
}
