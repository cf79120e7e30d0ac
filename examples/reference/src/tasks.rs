//! The reference MCP server's tools: a small task list per user, kept in memory. Each tool
//! takes the caller's verified principal (put there by the bearer layer) as an argument.
//! `list_notes` and `add_note` act for the user at a downstream provider (the mock
//! [`crate::notes`] provider) with the credential the guard hands them from the vault
//! ([`ToolCredential`]); the agent never sees it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ema_server::Principal;
use ema_server::authz::ToolCallAuthorizer;
use ema_server::rmcp::Guarded;
use ema_server::vault::{ToolCredential, ToolCredentials};
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

/// Arguments of `run_query`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct RunQuery {
    /// One SQL statement over the `tasks` table.
    pub query: String,
}

/// Arguments of `read_file`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct ReadFile {
    /// An absolute path.
    pub path: String,
}

/// Arguments of `send_message`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SendMessage {
    /// The recipient's address.
    pub to: String,
    /// The message.
    pub text: String,
}

/// Arguments of `add_note`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddNote {
    /// The note's text.
    pub text: String,
}

/// The downstream APIs the notes tools call, by provider id.
#[derive(Debug, Clone, Default)]
pub struct DownstreamApis {
    http: reqwest::Client,
    urls: Arc<HashMap<String, String>>,
}

impl DownstreamApis {
    /// The APIs at `urls` (provider id -> API URL).
    pub fn new(urls: HashMap<String, String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            urls: Arc::new(urls),
        }
    }
}

/// The task-list MCP server.
#[derive(Debug, Clone)]
pub struct Tasks {
    store: Store,
    apis: DownstreamApis,
    tool_router: ToolRouter<Self>,
}

/// The names of the tools, for the bearer layer's tool scopes.
pub fn tool_names() -> Vec<String> {
    ema_server::rmcp::tool_names(&Tasks::tool_router())
}

/// The tools as policies see them (names, schemas, annotations): what the Cedar schema is
/// generated from.
pub fn tool_definitions() -> Vec<ema_server::authz::ToolDefinition> {
    ema_server::rmcp::tool_definitions(&Tasks::tool_router())
}

fn needs(p: &Principal, scope: &str) -> Option<CallToolResult> {
    (!p.has_scope(scope)).then(|| {
        CallToolResult::error(vec![ContentBlock::text(format!(
            "insufficient_scope: this tool needs `{scope}`"
        ))])
    })
}

/// A tool error with `text`.
fn tool_failed(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text.into())])
}

#[tool_router]
impl Tasks {
    fn new(store: Store, apis: DownstreamApis) -> Self {
        Self {
            store,
            apis,
            tool_router: Self::tool_router(),
        }
    }

    /// Sends `request` to the notes API of the credential's provider with its secret as the
    /// bearer token; the answer's body, or a tool error that never repeats the credential.
    async fn notes_api(
        &self,
        credential: &ToolCredential,
        body: Option<serde_json::Value>,
    ) -> CallToolResult {
        let provider = credential.provider().as_str();
        let Some(url) = self.apis.urls.get(provider) else {
            return tool_failed(format!("no API is configured for provider `{provider}`"));
        };
        let secret = match credential.for_provider(provider) {
            Ok(credential) => credential.secret(),
            Err(refused) => return tool_failed(refused.to_string()),
        };
        let request = match body {
            None => self.apis.http.get(url),
            Some(body) => self.apis.http.post(url).json(&body),
        };
        match request.bearer_auth(secret.expose()).send().await {
            Ok(response) if response.status().is_success() => match response.text().await {
                Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
                Err(_) => tool_failed(format!("the {provider} API's answer could not be read")),
            },
            Ok(response) => tool_failed(format!(
                "the {provider} API answered HTTP {}",
                response.status().as_u16()
            )),
            Err(_) => tool_failed(format!("the {provider} API could not be reached")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Task>>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // Every tool declares its annotations: MCP's defaults for absent hints are the worst case
    // (destructive, open-world), and the guard's session rules count and block by them.
    #[tool(
        description = "Who the server sees: the local user, client, scopes and the IdP assertion the access token came from",
        annotations(read_only_hint = true, open_world_hint = false)
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

    #[tool(
        description = "List your tasks (needs tasks.read)",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_tasks(&self, p: Principal) -> Result<CallToolResult, ErrorData> {
        if let Some(denied) = needs(&p, "tasks.read") {
            return Ok(denied);
        }
        let tasks = self.lock().get(p.subject()).cloned().unwrap_or_default();
        let text = serde_json::to_string(&tasks).unwrap_or_else(|_| "[]".into());
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(
        description = "Run one SQL statement over your tasks table (SELECT lists them, DELETE removes them)",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    fn run_query(
        &self,
        p: Principal,
        Parameters(RunQuery { query }): Parameters<RunQuery>,
    ) -> Result<CallToolResult, ErrorData> {
        // A stand-in for a database: enough to show what an argument rule lets through.
        let verb = query
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let mut store = self.lock();
        let tasks = store.entry(p.subject().to_owned()).or_default();
        let text = match verb.as_str() {
            "SELECT" => serde_json::to_string(&*tasks).unwrap_or_else(|_| "[]".into()),
            "DELETE" => {
                let n = tasks.len();
                tasks.clear();
                format!("{n} rows deleted")
            }
            _ => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "unsupported statement `{verb}`: SELECT or DELETE"
                ))]));
            }
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(
        description = "Read a file of your project (/projects/<your user id>/...)",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_file(
        &self,
        p: Principal,
        Parameters(ReadFile { path }): Parameters<ReadFile>,
    ) -> Result<CallToolResult, ErrorData> {
        let root = format!("/projects/{}/", p.subject());
        let text = match path.strip_prefix(&root) {
            Some("README.md") => {
                format!("# Project of {}\nTasks live in the task list.", p.subject())
            }
            // A deployment secret, as real projects leave them: what the result inspector is
            // for. (The key is AWS's documented example key, not a real one.)
            Some(".env") => "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nREGION=eu-west-1".to_owned(),
            _ => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "no such file: {path}"
                ))]));
            }
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(
        description = "Send a message to an address outside the company",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    fn send_message(
        &self,
        Parameters(SendMessage { to, text }): Parameters<SendMessage>,
    ) -> Result<CallToolResult, ErrorData> {
        // Nothing leaves this reference server; the outbox is the count in the answer.
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "sent {} characters to {to}",
            text.chars().count()
        ))]))
    }

    #[tool(
        description = "Add a task (needs tasks.write)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
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

    #[tool(
        description = "Mark a task done (needs tasks.write)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
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

    #[tool(
        description = "List your notes at the notes service (acts with your connected notes account)",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn list_notes(&self, credential: ToolCredential) -> Result<CallToolResult, ErrorData> {
        Ok(self.notes_api(&credential, None).await)
    }

    #[tool(
        description = "Add a note at the notes service (acts with your connected notes account)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = true
        )
    )]
    async fn add_note(
        &self,
        credential: ToolCredential,
        Parameters(AddNote { text }): Parameters<AddNote>,
    ) -> Result<CallToolResult, ErrorData> {
        let text: String = text.chars().take(500).collect();
        Ok(self
            .notes_api(&credential, Some(serde_json::json!({ "text": text })))
            .await)
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
    tasks_service_in(Arc::new(LocalSessionManager::default()))
}

/// [`tasks_service`] keeping its MCP sessions in `sessions` (shared with the bearer layer's
/// session closer, RV-18).
pub fn tasks_service_in(
    sessions: Arc<LocalSessionManager>,
) -> StreamableHttpService<Tasks, LocalSessionManager> {
    let store: Store = Arc::default();
    StreamableHttpService::new(
        move || Ok(Tasks::new(store.clone(), DownstreamApis::default())),
        sessions,
        StreamableHttpServerConfig::default(),
    )
}

/// [`tasks_service`] with every tool call authorized by `authorizer` before it runs, the tool
/// list filtered per caller and results inspected ([`Guarded`]); `resource` is this MCP
/// server's resource identifier. Each decision goes to `audit` (`AuditLog::disabled()` for
/// none).
pub fn guarded_tasks_service(
    resource: &str,
    authorizer: Arc<dyn ToolCallAuthorizer>,
    audit: ema_server::audit::AuditLog,
) -> StreamableHttpService<Guarded<Tasks, Arc<dyn ToolCallAuthorizer>>, LocalSessionManager> {
    guarded_tasks_service_with_vault(resource, authorizer, audit, None)
}

/// [`guarded_tasks_service`] whose guard also hands the notes tools their provider's
/// credential from the vault (`vault`: the tool -> provider map with its connector, and the
/// APIs the tools call).
pub fn guarded_tasks_service_with_vault(
    resource: &str,
    authorizer: Arc<dyn ToolCallAuthorizer>,
    audit: ema_server::audit::AuditLog,
    vault: Option<(ToolCredentials, DownstreamApis)>,
) -> StreamableHttpService<Guarded<Tasks, Arc<dyn ToolCallAuthorizer>>, LocalSessionManager> {
    guarded_tasks_service_in(
        resource,
        authorizer,
        audit,
        vault,
        Arc::new(LocalSessionManager::default()),
    )
}

/// [`guarded_tasks_service_with_vault`] keeping its MCP sessions in `sessions` (shared with
/// the bearer layer's session closer, RV-18).
pub fn guarded_tasks_service_in(
    resource: &str,
    authorizer: Arc<dyn ToolCallAuthorizer>,
    audit: ema_server::audit::AuditLog,
    vault: Option<(ToolCredentials, DownstreamApis)>,
    sessions: Arc<LocalSessionManager>,
) -> StreamableHttpService<Guarded<Tasks, Arc<dyn ToolCallAuthorizer>>, LocalSessionManager> {
    let store: Store = Arc::default();
    let resource: Arc<str> = Arc::from(resource);
    let (credentials, apis) = match vault {
        Some((credentials, apis)) => (Some(credentials), apis),
        None => (None, DownstreamApis::default()),
    };
    StreamableHttpService::new(
        move || {
            let tasks = Tasks::new(store.clone(), apis.clone());
            let guarded =
                Guarded::new(tasks, &*resource, authorizer.clone()).with_audit(audit.clone());
            Ok(match &credentials {
                Some(credentials) => guarded.with_vault(credentials.clone()),
                None => guarded,
            })
        },
        sessions,
        StreamableHttpServerConfig::default(),
    )
}
