//! The reference MCP server's tools: a small task list per user, kept in memory. Each tool
//! takes the caller's verified principal (put there by the bearer layer) as an argument.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ema_server::Principal;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};

/// One task.
#[derive(Debug, Clone, serde::Serialize)]
struct Task {
    id: u64,
    title: String,
    done: bool,
}

/// Tasks by local user id.
type Store = Arc<Mutex<HashMap<String, Vec<Task>>>>;

/// Arguments of `add_task`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddTask {
    /// The task's title.
    pub title: String,
}

/// Arguments of `complete_task`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct CompleteTask {
    /// The task's id.
    pub id: u64,
}

/// The task-list MCP server.
#[derive(Debug, Clone)]
pub struct Tasks {
    store: Store,
    tool_router: ToolRouter<Self>,
}

/// The names of the tools, for the bearer layer's tool scopes.
pub fn tool_names() -> Vec<String> {
    ema_server::rmcp::tool_names(&Tasks::tool_router())
}

fn needs(p: &Principal, scope: &str) -> Option<CallToolResult> {
    (!p.has_scope(scope)).then(|| {
        CallToolResult::error(vec![ContentBlock::text(format!(
            "insufficient_scope: this tool needs `{scope}`"
        ))])
    })
}

#[tool_router]
impl Tasks {
    fn new(store: Store) -> Self {
        Self {
            store,
            tool_router: Self::tool_router(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Task>>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[tool(
        description = "Who the server sees: the local user, client, scopes and the IdP assertion the access token came from"
    )]
    fn whoami(&self, p: Principal) -> Result<CallToolResult, ErrorData> {
        let scopes: Vec<&str> = p.scopes().collect();
        let who = serde_json::json!({
            "sub": p.subject(),
            "client_id": p.client_id(),
            "scope": (!scopes.is_empty()).then(|| scopes.join(" ")),
            "groups": p.groups(),
            "access_token_jti": p.token_id(),
            "idp_issuer": p.id_jag().map(|o| o.iss.as_str()),
            "id_jag_jti": p.id_jag().map(|o| o.jti.as_str()),
        });
        Ok(CallToolResult::success(vec![ContentBlock::text(
            who.to_string(),
        )]))
    }

    #[tool(description = "List your tasks (needs tasks.read)")]
    fn list_tasks(&self, p: Principal) -> Result<CallToolResult, ErrorData> {
        if let Some(denied) = needs(&p, "tasks.read") {
            return Ok(denied);
        }
        let tasks = self.lock().get(p.subject()).cloned().unwrap_or_default();
        let text = serde_json::to_string(&tasks).unwrap_or_else(|_| "[]".into());
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(description = "Add a task (needs tasks.write)")]
    fn add_task(
        &self,
        p: Principal,
        Parameters(AddTask { title }): Parameters<AddTask>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(denied) = needs(&p, "tasks.write") {
            return Ok(denied);
        }
        let title: String = title.chars().take(200).collect();
        let mut store = self.lock();
        let tasks = store.entry(p.subject().to_owned()).or_default();
        let id = tasks.len() as u64 + 1;
        tasks.push(Task {
            id,
            title: title.clone(),
            done: false,
        });
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "added task {id}: {title}"
        ))]))
    }

    #[tool(description = "Mark a task done (needs tasks.write)")]
    fn complete_task(
        &self,
        p: Principal,
        Parameters(CompleteTask { id }): Parameters<CompleteTask>,
    ) -> Result<CallToolResult, ErrorData> {
        if let Some(denied) = needs(&p, "tasks.write") {
            return Ok(denied);
        }
        let mut store = self.lock();
        match store
            .get_mut(p.subject())
            .and_then(|t| t.iter_mut().find(|t| t.id == id))
        {
            Some(task) => {
                task.done = true;
                Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "task {id} done"
                ))]))
            }
            None => Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "no task {id}"
            ))])),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tasks {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "A task list per user, protected by MCP Enterprise-Managed Authorization",
        )
    }
}

/// The Streamable HTTP service serving [`Tasks`], sharing one store across sessions.
pub fn tasks_service() -> StreamableHttpService<Tasks, LocalSessionManager> {
    let store: Store = Arc::default();
    StreamableHttpService::new(
        move || Ok(Tasks::new(store.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    )
}
