//! A minimal MCP Streamable HTTP client session for load: `initialize`,
//! `notifications/initialized`, then `tools/call` over one keep-alive connection, reading each
//! response in full (SSE or JSON).

use std::net::SocketAddr;

use axum::body::Bytes;
use serde_json::Value;

use super::client::{ClientError, Connection, Reply};
use super::stack::{MCP_PATH, MCP_PROTOCOL_VERSION};

/// Why an MCP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(#[from] ClientError),
    /// An unexpected HTTP status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The body was not the expected JSON-RPC result.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The tool answered with a tool error (`isError: true`), such as a policy's denial: its
    /// text.
    #[error("tool error: {0}")]
    Tool(String),
}

/// One initialized MCP session. `Debug` does not show the `Authorization` value.
pub struct McpSession {
    conn: Connection,
    authorization: Option<String>,
    session_id: String,
    next_id: u64,
}

impl std::fmt::Debug for McpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSession")
            .field("conn", &self.conn)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("session_id", &self.session_id)
            .field("next_id", &self.next_id)
            .finish()
    }
}

/// The JSON-RPC messages in a response body: one JSON document, or the `data:` lines of an SSE
/// stream.
pub fn messages(body: &[u8]) -> Vec<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return vec![v];
    }
    let text = String::from_utf8_lossy(body);
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

/// Whether `body` carries a successful result for request `id` (not a tool error).
pub fn is_result(body: &[u8], id: u64) -> bool {
    messages(body).iter().any(|m| {
        m.get("id").and_then(Value::as_u64) == Some(id)
            && m.get("result")
                .is_some_and(|r| r.get("isError").and_then(Value::as_bool) != Some(true))
    })
}

/// The text blocks of a tool result, joined.
pub fn text(result: &Value) -> String {
    result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

impl McpSession {
    async fn post(&mut self, body: String, session: bool) -> Result<Reply, ClientError> {
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(auth) = &self.authorization {
            headers.push(("authorization", auth));
        }
        if session {
            headers.push(("mcp-session-id", &self.session_id));
            headers.push(("mcp-protocol-version", MCP_PROTOCOL_VERSION));
        }
        self.conn
            .send("POST", MCP_PATH, &headers, Bytes::from(body))
            .await
    }

    /// Opens a connection to the MCP server at `addr` and initializes a session, with `token`
    /// as the bearer token when given.
    pub async fn open(addr: SocketAddr, token: Option<&str>) -> Result<Self, McpError> {
        let mut s = Self {
            conn: Connection::new(addr),
            authorization: token.map(|t| format!("Bearer {t}")),
            session_id: String::new(),
            next_id: 1,
        };
        let init = serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": MCP_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "ema-load", "version": "1"}
            }
        });
        let reply = s.post(init.to_string(), false).await?;
        if reply.status != 200 {
            return Err(McpError::Status(reply.status));
        }
        if !is_result(&reply.body, 0) {
            return Err(McpError::Protocol("initialize returned no result"));
        }
        s.session_id = reply
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or(McpError::Protocol("no Mcp-Session-Id"))?
            .to_owned();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let reply = s.post(initialized.to_owned(), true).await?;
        if reply.status != 202 {
            return Err(McpError::Status(reply.status));
        }
        Ok(s)
    }

    /// Calls `tool` without arguments and checks the result.
    pub async fn call(&mut self, tool: &str) -> Result<(), McpError> {
        self.call_with(tool, Value::Object(serde_json::Map::new()))
            .await
            .map(drop)
    }

    /// Calls `tool` with `arguments` and returns its result (the JSON-RPC `result` object); a
    /// tool error is [`McpError::Tool`] with the error's text.
    pub async fn call_with(&mut self, tool: &str, arguments: Value) -> Result<Value, McpError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}
        });
        let reply = self.post(body.to_string(), true).await?;
        if reply.status != 200 {
            return Err(McpError::Status(reply.status));
        }
        let result = messages(&reply.body)
            .into_iter()
            .filter(|m| m.get("id").and_then(Value::as_u64) == Some(id))
            .find_map(|mut m| m.get_mut("result").map(Value::take))
            .ok_or(McpError::Protocol("tools/call returned no result"))?;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err(McpError::Tool(text(&result)));
        }
        Ok(result)
    }

    /// The session id the server assigned.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}
