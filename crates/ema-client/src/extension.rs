//! The EMA extension in the MCP client's capabilities (CL-15).
//!
//! An MCP client that authorizes with Enterprise-Managed Authorization declares the extension in
//! its capability `extensions` map: `capabilities.extensions` of `initialize` up to MCP
//! 2025-11-25, `_meta["io.modelcontextprotocol/clientCapabilities"].extensions` on every request
//! from 2026-07-28. rmcp fills both from the handler's
//! [`ClientConfig`](rmcp::model::ClientConfig), so declaring it there once covers every protocol
//! version.
//!
//! [`declare_url_elicitation`] adds MCP's URL-mode elicitation next to it, for a client that
//! shows the user the links a server asks them to open.

/// The MCP extension identifier of Enterprise-Managed Authorization, the key a client declares in
/// its capability `extensions` with an empty object as value (CL-15).
pub const EMA_EXTENSION_ID: &str = "io.modelcontextprotocol/enterprise-managed-authorization";

#[cfg(feature = "rmcp")]
use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitationCapability, UrlElicitationCapability,
};

/// Declares the EMA extension in `caps`: adds [`EMA_EXTENSION_ID`] with an empty settings object
/// to `caps.extensions`, creating the map if needed (CL-15).
///
/// Every other extension already declared is kept, and so is an EMA entry that is already
/// there; calling it twice changes nothing. Use it in the
/// [`get_info`](rmcp::ClientHandler::get_info) of your own
/// [`ClientHandler`](rmcp::ClientHandler); without a handler of your own, serve
/// [`ema_client_config`] instead of `()`.
///
/// ```
/// use ema_client::{EMA_EXTENSION_ID, declare_ema_extension};
/// use rmcp::model::ClientCapabilities;
///
/// let mut caps = ClientCapabilities::default();
/// declare_ema_extension(&mut caps);
/// let json = serde_json::to_value(&caps)?;
/// assert_eq!(json["extensions"][EMA_EXTENSION_ID], serde_json::json!({}));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[cfg(feature = "rmcp")]
pub fn declare_ema_extension(caps: &mut ClientCapabilities) {
    // CL-15: `"io.modelcontextprotocol/enterprise-managed-authorization": {}` in `extensions`,
    // next to whatever the caller declared.
    caps.extensions
        .get_or_insert_with(Default::default)
        .entry(EMA_EXTENSION_ID.to_owned())
        .or_default();
}

/// Declares URL-mode elicitation in `caps` (`elicitation.url`, MCP 2025-11-25), keeping the
/// form mode if it is declared; calling it twice changes nothing.
///
/// Declare it only when the client shows the user the links an MCP server asks them to open.
/// A server may then answer a tool call with the URL-elicitation-required error (`-32042`)
/// whose `data.elicitations[].url` the client must show (an EMA-guarded MCP server does this
/// when the user must connect a downstream account; to a client that did not declare URL mode
/// it sends the link in a tool error instead), or send an `elicitation/create` in URL mode,
/// which only a [`ClientHandler`](rmcp::ClientHandler) of your own that implements
/// `create_elicitation` can show: rmcp's [`ClientConfig`] served as is declines it.
///
/// ```
/// use ema_client::{declare_url_elicitation, ema_client_config};
///
/// let mut config = ema_client_config();
/// declare_url_elicitation(&mut config.capabilities);
/// let json = serde_json::to_value(&config.capabilities)?;
/// assert_eq!(json["elicitation"], serde_json::json!({"url": {}}));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[cfg(feature = "rmcp")]
pub fn declare_url_elicitation(caps: &mut ClientCapabilities) {
    let elicitation = caps
        .elicitation
        .get_or_insert_with(ElicitationCapability::default);
    elicitation
        .url
        .get_or_insert_with(UrlElicitationCapability::default);
}

/// rmcp's default [`ClientConfig`] with the EMA extension declared ([`declare_ema_extension`]),
/// CL-15.
///
/// A `ClientConfig` is itself an rmcp [`ClientHandler`](rmcp::ClientHandler) that does nothing
/// but announce itself, so it takes the place of `()` when serving an [`EmaHttpClient`] transport.
/// Adjust the returned value (client name, other capabilities) before serving it if needed.
///
/// [`EmaHttpClient`]: crate::EmaHttpClient
///
/// ```no_run
/// # async fn demo(session: ema_client::EmaSession) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use ema_client::{EmaHttpClient, ema_client_config};
/// use rmcp::ServiceExt;
///
/// let transport = EmaHttpClient::new(Arc::new(session))?.into_transport();
/// let client = ema_client_config().serve(transport).await?;
/// let tools = client.list_all_tools().await?;
/// # let _ = tools; Ok(()) }
/// ```
#[cfg(feature = "rmcp")]
pub fn ema_client_config() -> ClientConfig {
    let mut info = ClientConfig::default();
    declare_ema_extension(&mut info.capabilities);
    info
}

#[cfg(test)]
#[cfg(feature = "rmcp")]
mod tests {
    use rmcp::model::ExtensionCapabilities;
    use serde_json::{Value, json};

    use super::*;

    fn extensions(caps: &ClientCapabilities) -> Value {
        serde_json::to_value(caps).unwrap()["extensions"].clone()
    }

    #[test]
    fn cl15_declares_the_extension_with_an_empty_object() {
        let mut caps = ClientCapabilities::default();
        assert!(caps.extensions.is_none());
        declare_ema_extension(&mut caps);
        assert_eq!(
            extensions(&caps),
            json!({"io.modelcontextprotocol/enterprise-managed-authorization": {}})
        );
        assert_eq!(
            EMA_EXTENSION_ID,
            "io.modelcontextprotocol/enterprise-managed-authorization"
        );
    }

    #[test]
    fn cl15_keeps_the_extensions_already_declared() {
        let mut ui = rmcp::model::JsonObject::new();
        ui.insert("mimeTypes".into(), json!(["text/html+mcp"]));
        let mut declared = ExtensionCapabilities::new();
        declared.insert("io.modelcontextprotocol/ui".into(), ui);
        let mut caps = ClientCapabilities::default();
        caps.extensions = Some(declared);
        caps.roots = Some(Default::default());

        declare_ema_extension(&mut caps);
        // Idempotent: a second call changes nothing.
        declare_ema_extension(&mut caps);

        assert_eq!(
            extensions(&caps),
            json!({
                "io.modelcontextprotocol/ui": {"mimeTypes": ["text/html+mcp"]},
                "io.modelcontextprotocol/enterprise-managed-authorization": {},
            })
        );
        assert!(caps.roots.is_some(), "other capabilities untouched");
    }

    #[test]
    fn cl15_keeps_an_ema_entry_already_there() {
        let mut settings = rmcp::model::JsonObject::new();
        settings.insert("future".into(), json!(true));
        let mut caps = ClientCapabilities::default();
        caps.extensions = Some(ExtensionCapabilities::from([(
            EMA_EXTENSION_ID.to_owned(),
            settings,
        )]));
        declare_ema_extension(&mut caps);
        assert_eq!(extensions(&caps)[EMA_EXTENSION_ID], json!({"future": true}));
    }

    #[test]
    fn url_elicitation_is_declared_next_to_what_is_there() {
        let mut caps = ClientCapabilities::default();
        assert!(caps.elicitation.is_none());
        declare_url_elicitation(&mut caps);
        declare_url_elicitation(&mut caps);
        assert_eq!(
            serde_json::to_value(&caps).unwrap()["elicitation"],
            json!({"url": {}})
        );
        // Form mode already declared is kept.
        let mut caps: ClientCapabilities =
            serde_json::from_value(json!({"elicitation": {"form": {}}, "roots": {}})).unwrap();
        declare_url_elicitation(&mut caps);
        let json = serde_json::to_value(&caps).unwrap();
        assert_eq!(json["elicitation"], json!({"form": {}, "url": {}}));
        assert_eq!(json["roots"], json!({}));
        // The EMA extension is untouched, and `ema_client_config` alone declares no elicitation.
        let mut config = ema_client_config();
        assert!(config.capabilities.elicitation.is_none());
        declare_url_elicitation(&mut config.capabilities);
        assert_eq!(
            serde_json::to_value(&config.capabilities).unwrap()["extensions"][EMA_EXTENSION_ID],
            json!({})
        );
    }

    #[test]
    fn cl15_ema_client_config_is_the_default_config_plus_the_extension() {
        let info = ema_client_config();
        let default = ClientConfig::default();
        assert_eq!(info.client_info, default.client_info);
        assert_eq!(info.protocol_version, default.protocol_version);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json["capabilities"]["extensions"][EMA_EXTENSION_ID],
            json!({})
        );
        assert_eq!(
            json["capabilities"]["extensions"]
                .as_object()
                .map(|m| m.len()),
            Some(1)
        );
    }
}
