//! [`CedarEngine`]: decides tool calls with a validated policy set, swaps the set atomically
//! on reload, and keeps the last good set when a reload is refused.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cedar_policy::{
    Authorizer, Context, Entities, EntityUid, Request, Response, RestrictedExpression,
};
use mcp_tools_sdk::data::Input;
use serde_json::{Map, Value};

use super::guard::Facts;
use super::policies::{CedarPolicies, PolicyLoadError, Selected, fingerprint, read_dir_sources};
use super::principal::{principal_entity, principal_id};
use super::schema::{CedarSchema, ToolEntry};
use crate::authorizer::PolicyEngine;
use crate::model::{Decision, Principal, SessionContext, ToolCall, ToolDefinition};

/// The reason of a default deny.
pub const NO_PERMIT: &str = "no policy permits this call";

/// A [`PolicyEngine`] on Cedar: policies validated against the schema generated from the MCP
/// server's tools, decided per call with the call's arguments and the session context.
///
/// Fails closed: an unknown tool, arguments that do not match the tool's input schema, a
/// principal that cannot be expressed, and any evaluation error of any policy are denials
/// with their reason; nothing is allowed unless a policy permits it and none forbids it.
///
/// `context.tool` holds the annotations of the tool list the schema was built from (what the
/// policies were validated against), not [`ToolCall::annotations`].
///
/// Readers never wait for a reload: the policy set is an `Arc` swapped under a lock held only
/// for the swap, and every decision uses the set that was current when it started.
pub struct CedarEngine {
    schema: CedarSchema,
    current: RwLock<Arc<CedarPolicies>>,
    source: Option<PathBuf>,
    /// Serializes reloads and remembers the fingerprint of the last sources seen.
    reload: Mutex<Option<u64>>,
    authorizer: Authorizer,
    /// The principal and resource entities of recent calls (they depend only on the principal,
    /// the server and the schema's principal mapping), by a hash of issuer, subject, token id
    /// and server;
    /// a hit is used only if the whole principal and the server are equal.
    bases: RwLock<HashMap<u64, Arc<BaseEntities>>>,
}

/// How many (principal, server) entity sets [`CedarEngine`] keeps; the cache starts afresh
/// when full.
const BASE_CACHE: usize = 1024;

struct BaseEntities {
    principal: Principal,
    server: String,
    principal_uid: EntityUid,
    resource_uid: EntityUid,
    entities: Entities,
}

impl std::fmt::Debug for CedarEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CedarEngine")
            .field("schema", &self.schema)
            .field("policies", &self.policies().len())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What a successful reload installed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadSummary {
    /// How many policies are now in force.
    pub policies: usize,
}

impl CedarEngine {
    /// An engine deciding with `policies`, which must have been loaded against `schema`.
    pub fn new(schema: CedarSchema, policies: CedarPolicies) -> Result<Self, PolicyLoadError> {
        if policies.schema_id != schema.id() {
            return Err(PolicyLoadError::SchemaMismatch);
        }
        Ok(Self {
            schema,
            current: RwLock::new(Arc::new(policies)),
            source: None,
            reload: Mutex::new(None),
            authorizer: Authorizer::new(),
            bases: RwLock::new(HashMap::new()),
        })
    }

    /// An engine whose policies are the `*.cedar` files of `dir`, which [`reload`](Self::reload)
    /// and [`reload_if_changed`](Self::reload_if_changed) read again.
    pub fn from_dir(schema: CedarSchema, dir: impl Into<PathBuf>) -> Result<Self, PolicyLoadError> {
        let dir = dir.into();
        let sources = read_dir_sources(&dir)?;
        if sources.is_empty() {
            return Err(PolicyLoadError::NoPolicies(dir.display().to_string()));
        }
        let seen = fingerprint(&sources);
        let policies = CedarPolicies::from_sources(&schema, sources)?;
        let mut engine = Self::new(schema, policies)?;
        engine.source = Some(dir);
        engine.reload = Mutex::new(Some(seen));
        Ok(engine)
    }

    /// The schema policies are validated against.
    pub fn schema(&self) -> &CedarSchema {
        &self.schema
    }

    /// The policy set in force.
    pub fn policies(&self) -> Arc<CedarPolicies> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Validates `sources` (`(name, text)` pairs) against the engine's schema and, if they
    /// validate, puts them in force. Otherwise the set in force stays and the error says why.
    pub fn replace_sources<N: Into<String>, T: AsRef<str>>(
        &self,
        sources: impl IntoIterator<Item = (N, T)>,
    ) -> Result<ReloadSummary, PolicyLoadError> {
        let _guard = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let policies = CedarPolicies::from_sources(&self.schema, sources)?;
        Ok(self.install(policies))
    }

    /// Reads the policy directory again and puts the new set in force if it validates;
    /// otherwise keeps the set in force and returns why.
    pub fn reload(&self) -> Result<ReloadSummary, PolicyLoadError> {
        let dir = self.source.as_ref().ok_or(PolicyLoadError::NoSource)?;
        let mut seen = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let sources = read_dir_sources(dir)?;
        *seen = Some(fingerprint(&sources));
        self.load_sources(dir, sources)
    }

    /// For polling: reloads when the `*.cedar` files of the directory (names or contents)
    /// changed since the last load or reload attempt, and says what happened; `None` when
    /// nothing changed. A refused change is reported once, then not again until the files
    /// change anew.
    pub fn reload_if_changed(&self) -> Option<Result<ReloadSummary, PolicyLoadError>> {
        let dir = match self.source.as_ref() {
            Some(dir) => dir,
            None => return Some(Err(PolicyLoadError::NoSource)),
        };
        let mut seen = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let sources = match read_dir_sources(dir) {
            Ok(sources) => sources,
            Err(e) => return Some(Err(e)),
        };
        let now = fingerprint(&sources);
        if *seen == Some(now) {
            return None;
        }
        *seen = Some(now);
        Some(self.load_sources(dir, sources))
    }

    fn load_sources(
        &self,
        dir: &std::path::Path,
        sources: Vec<(String, String)>,
    ) -> Result<ReloadSummary, PolicyLoadError> {
        if sources.is_empty() {
            return Err(PolicyLoadError::NoPolicies(dir.display().to_string()));
        }
        let policies = CedarPolicies::from_sources(&self.schema, sources)?;
        Ok(self.install(policies))
    }

    fn install(&self, policies: CedarPolicies) -> ReloadSummary {
        let summary = ReloadSummary {
            policies: policies.len(),
        };
        let new = Arc::new(policies);
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, new)
        };
        // The old set is dropped here, outside the lock (or later, by the last reader).
        drop(old);
        summary
    }

    fn tool_context(
        tool: &str,
        entry: &ToolEntry,
        session: &SessionContext,
    ) -> Result<[(String, RestrictedExpression); 2], String> {
        let long = |n: u64| RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX));
        let strings = |items: &mut dyn Iterator<Item = &String>| {
            RestrictedExpression::new_set(
                items.map(|s| RestrictedExpression::new_string(s.clone())),
            )
        };
        let session_record = RestrictedExpression::new_record([
            ("labels".to_owned(), strings(&mut session.labels.iter())),
            (
                "tools_called".to_owned(),
                strings(&mut session.calls.keys()),
            ),
            ("tool_calls".to_owned(), long(session.count(tool))),
            ("total_calls".to_owned(), long(session.total_calls)),
            (
                "destructive_calls".to_owned(),
                long(session.destructive_calls),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let hints = entry.annotations;
        let tool_record = RestrictedExpression::new_record([
            (
                "name".to_owned(),
                RestrictedExpression::new_string(tool.to_owned()),
            ),
            (
                "read_only".to_owned(),
                RestrictedExpression::new_bool(hints.read_only()),
            ),
            (
                "destructive".to_owned(),
                RestrictedExpression::new_bool(hints.destructive()),
            ),
            (
                "idempotent".to_owned(),
                RestrictedExpression::new_bool(hints.idempotent_hint.unwrap_or(false)),
            ),
            (
                "open_world".to_owned(),
                RestrictedExpression::new_bool(hints.open_world()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        Ok([
            ("session".to_owned(), session_record),
            ("tool".to_owned(), tool_record),
        ])
    }

    /// The principal and resource entities and uids of a request, from the cache when this
    /// principal called this server recently.
    fn base_entities(
        &self,
        principal: &Principal,
        server: &str,
    ) -> Result<(EntityUid, EntityUid, Entities), String> {
        let base = self.cached_base(principal, server)?;
        Ok((
            base.principal_uid.clone(),
            base.resource_uid.clone(),
            base.entities.clone(),
        ))
    }

    /// [`base_entities`](Self::base_entities), shared with the cache.
    fn cached_base(
        &self,
        principal: &Principal,
        server: &str,
    ) -> Result<Arc<BaseEntities>, String> {
        let key = {
            let mut hasher = DefaultHasher::new();
            // The token's id too: a user's concurrent tokens (one per agent or session)
            // would otherwise take turns evicting each other's entry.
            (
                &principal.issuer,
                &principal.subject,
                &principal.token_jti,
                server,
            )
                .hash(&mut hasher);
            hasher.finish()
        };
        let hit = self
            .bases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|base| base.server == server && base.principal == *principal)
            .cloned();
        if let Some(base) = hit {
            return Ok(base);
        }
        let (principal_uid, resource_uid, entities) = self.new_base_entities(principal, server)?;
        let base = Arc::new(BaseEntities {
            principal: principal.clone(),
            server: server.to_owned(),
            principal_uid,
            resource_uid,
            entities,
        });
        let mut bases = self.bases.write().unwrap_or_else(PoisonError::into_inner);
        if bases.len() >= BASE_CACHE {
            bases.clear();
        }
        bases.insert(key, Arc::clone(&base));
        Ok(base)
    }

    /// The decision of a call of a tool that every policy able to apply to it allows without
    /// condition (see `ToolPolicies::always_allowed_by`), when its arguments match the tool's
    /// plain input schema and the principal's entity builds: what Cedar would decide for the
    /// request `build_request` makes, without making it. `None`: decide the full way.
    fn unconditional(
        &self,
        policies: &CedarPolicies,
        principal: &Principal,
        call: &ToolCall,
    ) -> Option<Decision> {
        let ids = policies.for_tool(&call.tool)?.always_allowed_by.as_ref()?;
        let entry = self.schema.tool(&call.tool)?;
        if !entry.plain.as_ref()?.matches(&call.arguments) {
            return None;
        }
        // A principal whose mapped attributes do not fit the schema is refused with its
        // reason by the full way.
        self.cached_base(principal, &call.server).ok()?;
        let reasons = ids
            .iter()
            .filter_map(|id| policies.reason_of(id).map(str::to_owned))
            .collect();
        Some(Decision::allow(ids.clone(), reasons))
    }

    fn new_base_entities(
        &self,
        principal: &Principal,
        server: &str,
    ) -> Result<(EntityUid, EntityUid, Entities), String> {
        let principal_uid = self.schema.principal_uid(principal_id(principal));
        let resource_uid = self.schema.resource_uid(server);
        let principal_entity =
            principal_entity(principal, principal_uid.clone(), self.schema.mapping())?;
        let resource_entity = cedar_policy::Entity::with_uid(resource_uid.clone());
        let entities = Entities::from_entities([principal_entity, resource_entity], None)
            .map_err(|e| e.to_string())?;
        Ok((principal_uid, resource_uid, entities))
    }

    /// Builds the Cedar request and entities for `call` (exposed for the fuzz target): the
    /// arguments are checked against the tool's input schema and converted to Cedar values.
    ///
    /// For a tool whose input schema has only plain properties (strings, integers, booleans)
    /// the engine checks and converts the arguments itself, as the schema generator would, and
    /// the request's values have the schema's types by construction; any other tool, and any
    /// call whose arguments do not match, goes through the schema generator's request
    /// generator, whose request is validated against the schema, so a refused argument is
    /// refused with its reason.
    pub fn build_request(
        &self,
        principal: &Principal,
        call: &ToolCall,
        session: &SessionContext,
    ) -> Result<(Request, Entities), String> {
        let entry = self.tool_entry(&call.tool)?;
        let (principal_uid, resource_uid, entities) =
            self.base_entities(principal, &call.server)?;
        let context = Self::tool_context(&call.tool, entry, session)?;
        if let Some(input) = entry
            .plain
            .as_ref()
            .and_then(|plain| plain.convert(&call.arguments))
        {
            let [session_pair, tool_pair] = context.clone();
            // Not validated against the schema again (that is a third of the request's cost):
            // every value has its declared type by construction (the principal and resource
            // types, the session and tool records, the arguments checked against the tool's
            // plain input schema). The differential tests compare the decisions of these
            // requests with those of the generator's, which validates.
            let request =
                Context::from_pairs([session_pair, tool_pair, ("input".to_owned(), input)])
                    .ok()
                    .and_then(|context| {
                        Request::new(
                            principal_uid.clone(),
                            entry.action.clone(),
                            resource_uid.clone(),
                            context,
                            None,
                        )
                        .ok()
                    });
            if let Some(request) = request {
                return Ok((request, entities));
            }
        }
        self.generate_request(principal_uid, resource_uid, entities, context, call)
    }

    fn tool_entry(&self, tool: &str) -> Result<&ToolEntry, String> {
        self.schema.tool(tool).ok_or_else(|| {
            format!(
                "unknown tool `{tool}`: it is not in the tool list the policies were validated against"
            )
        })
    }

    /// The request built by the schema generator's request generator.
    fn generate_request(
        &self,
        principal_uid: EntityUid,
        resource_uid: EntityUid,
        entities: Entities,
        context: [(String, RestrictedExpression); 2],
        call: &ToolCall,
    ) -> Result<(Request, Entities), String> {
        let input = mcp_input(&call.tool, &call.arguments)?;
        let context = context
            .into_iter()
            .map(|(name, value)| (name.into(), value.as_ref().clone()));
        let (request, entities) = self
            .schema
            .generator()
            .generate_request(
                principal_uid.into(),
                resource_uid.into(),
                context,
                entities.as_ref().clone(),
                &input,
                None,
            )
            .map_err(|e| format!("arguments of `{}` refused: {e}", call.tool))?;
        Ok((Request::from(request), Entities::from(entities)))
    }

    /// The decision of the plain path: the entities built afresh, the request built by the
    /// schema generator, and Cedar evaluating every policy of the set. [`decide`](PolicyEngine::decide) gives the same
    /// decision, deciding policies and reasons, faster; this is what it is checked against.
    pub fn decide_unoptimized(
        &self,
        principal: &Principal,
        call: &ToolCall,
        session: &SessionContext,
    ) -> Decision {
        let policies = self.policies();
        let request = self.tool_entry(&call.tool).and_then(|entry| {
            let (principal_uid, resource_uid, entities) =
                self.new_base_entities(principal, &call.server)?;
            let context = Self::tool_context(&call.tool, entry, session)?;
            self.generate_request(principal_uid, resource_uid, entities, context, call)
        });
        let mut decision = match request {
            Ok((request, entities)) => {
                let response = self
                    .authorizer
                    .is_authorized(&request, &policies.set, &entities);
                Self::decision_of(&policies, &response)
            }
            Err(reason) => Decision::deny_because(reason),
        };
        decision.labels = session.labels.clone();
        decision
    }

    fn decision_of(policies: &CedarPolicies, response: &Response) -> Decision {
        let diagnostics = response.diagnostics();
        let errors: Vec<_> = diagnostics.errors().collect();
        if !errors.is_empty() {
            // Cedar skips a policy whose evaluation fails; an erroring forbid would then
            // silently not apply. Fail closed instead: any error denies.
            return Decision::deny(
                errors
                    .iter()
                    .map(|e| match e {
                        cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                            e.policy_id().to_string()
                        }
                    })
                    .collect(),
                errors
                    .iter()
                    .map(|e| format!("policy evaluation failed: {e}"))
                    .collect(),
            );
        }
        let ids: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        match response.decision() {
            cedar_policy::Decision::Allow => {
                let reasons = ids
                    .iter()
                    .filter_map(|id| policies.reason_of(id).map(str::to_owned))
                    .collect();
                Decision::allow(ids, reasons)
            }
            cedar_policy::Decision::Deny if ids.is_empty() => {
                Decision::deny(Vec::new(), vec![NO_PERMIT.to_owned()])
            }
            cedar_policy::Decision::Deny => {
                let reasons = ids
                    .iter()
                    .map(|id| match policies.reason_of(id) {
                        Some(reason) => reason.to_owned(),
                        None => format!("forbidden by policy `{id}`"),
                    })
                    .collect();
                Decision::deny(ids, reasons)
            }
        }
    }
}

/// The `tools/call` request the MCP tools SDK reads arguments from.
fn mcp_input(tool: &str, arguments: &Map<String, Value>) -> Result<Input, String> {
    let request = serde_json::json!({ "params": { "name": tool, "arguments": arguments } });
    Input::from_json_str(&request.to_string()).map_err(|e| format!("malformed arguments: {e}"))
}

/// The policies of `policies` Cedar must evaluate for a call of `tool`: the tool's set, less
/// the policies whose guards the principal and session fail.
fn select<'a>(
    policies: &'a CedarPolicies,
    tool: &str,
    entry: &ToolEntry,
    principal: &Principal,
    session: &SessionContext,
) -> Selected<'a> {
    match policies.for_tool(tool) {
        Some(subset) => subset.select(&Facts {
            principal,
            tool,
            annotations: &entry.annotations,
            session,
        }),
        None => Selected::All(&policies.set),
    }
}

impl PolicyEngine for CedarEngine {
    /// Evaluates only the policies that can apply: those whose action scope matches the tool
    /// and whose leading conditions on the principal, the tool's annotations and the session
    /// (a group, role, scope or label they require, an attribute value, a counter bound) hold
    /// for this call. Skipped policies are exactly those Cedar would find not satisfied
    /// without an error, so the decision, the deciding policies and the reported errors are
    /// those of the whole set.
    ///
    /// A tool whose applicable policies are all permits without conditions is allowed without
    /// Cedar once its arguments are checked against its input schema: the same decision,
    /// policies and reasons Cedar gives (no condition can fail or err).
    fn decide(&self, principal: &Principal, call: &ToolCall, session: &SessionContext) -> Decision {
        let policies = self.policies();
        if let Some(mut decision) = self.unconditional(&policies, principal, call) {
            decision.labels = session.labels.clone();
            return decision;
        }
        let mut decision = match self.build_request(principal, call, session) {
            Ok((request, entities)) => match self.schema.tool(&call.tool) {
                Some(entry) => {
                    let set = select(&policies, &call.tool, entry, principal, session);
                    let response = self.authorizer.is_authorized(&request, &set, &entities);
                    Self::decision_of(&policies, &response)
                }
                // `build_request` refuses unknown tools.
                None => Decision::deny_because(format!("unknown tool `{}`", call.tool)),
            },
            Err(reason) => Decision::deny_because(reason),
        };
        decision.labels = session.labels.clone();
        decision
    }

    /// Evaluates the policies with the tool's arguments unknown (Cedar partial evaluation):
    /// false only when the policies deny whatever the arguments are.
    fn may_call(
        &self,
        principal: &Principal,
        tool: &ToolDefinition,
        session: &SessionContext,
    ) -> bool {
        let Some(entry) = self.schema.tool(&tool.name) else {
            return false;
        };
        let Ok((principal_uid, resource_uid, entities)) = self.base_entities(principal, "") else {
            return false;
        };
        let Ok([session_pair, tool_pair]) = Self::tool_context(&tool.name, entry, session) else {
            return false;
        };
        let context = Context::from_pairs([
            session_pair,
            tool_pair,
            (
                "input".to_owned(),
                RestrictedExpression::new_unknown("input"),
            ),
        ]);
        let Ok(context) = context else {
            return false;
        };
        // The resource is left unknown too: `tools/list` is asked without naming the server.
        let _ = resource_uid;
        let request = cedar_policy::RequestBuilder::default()
            .principal(principal_uid)
            .action(entry.action.clone())
            .unknown_resource_with_type(resource_type(&self.schema))
            .context(context)
            .build();
        let policies = self.policies();
        // The guards read only the principal, the tool and the session, all known here.
        let set = select(&policies, &tool.name, entry, principal, session);
        let response = self
            .authorizer
            .is_authorized_partial(&request, &set, &entities);
        response.decision() != Some(cedar_policy::Decision::Deny)
    }
}

fn resource_type(schema: &CedarSchema) -> cedar_policy::EntityTypeName {
    schema.resource_uid("").type_name().clone()
}
