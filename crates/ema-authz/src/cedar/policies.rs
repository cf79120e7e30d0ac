//! Policies: read from `*.cedar` files, named, and validated against the [`CedarSchema`]
//! before they can decide anything.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{
    ActionConstraint, Policy, PolicyId, PolicySet, PrincipalConstraint, ResourceConstraint,
    ValidationMode,
};
use miette::Diagnostic;

use super::guard::{Facts, Guard};
use super::schema::CedarSchema;

/// The annotation that names a policy.
pub const ID_ANNOTATION: &str = "id";
/// The annotation whose text a decision gives as its reason.
pub const REASON_ANNOTATION: &str = "reason";

/// One problem found while loading policies: where, which policy, and Cedar's message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyDiagnostic {
    /// The file (its name within the policy directory, or the source name given).
    pub file: String,
    /// The policy's id, when the problem belongs to one policy.
    pub policy: Option<String>,
    /// The message (Cedar's, with its help when it has one).
    pub message: String,
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(policy) => write!(f, "{}: policy `{policy}`: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why a set of policies was refused. When a reload is refused, the engine keeps the last good
/// set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyLoadError {
    /// The policy directory or one of its files could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No policy at all: the directory holds no `*.cedar` file, or the files hold no policy.
    /// Refused so that a wrong path or an emptied directory is noticed (it would deny
    /// everything).
    #[error("no policies found in {0}")]
    NoPolicies(String),
    /// Policies that do not parse, repeat an id, use templates, or do not validate against the
    /// schema. Each diagnostic names its file and policy.
    #[error("{} policy error(s):\n{}", diagnostics.len(), DisplayList(diagnostics))]
    Invalid {
        /// Every problem found.
        diagnostics: Vec<PolicyDiagnostic>,
    },
    /// The policies were loaded against another schema than the engine's.
    #[error("the policies were validated against another schema than the engine's")]
    SchemaMismatch,
    /// `reload` was asked of an engine built without a policy directory.
    #[error("the engine has no policy directory to reload from")]
    NoSource,
}

struct DisplayList<'a>(&'a [PolicyDiagnostic]);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {d}")?;
        }
        Ok(())
    }
}

impl PolicyLoadError {
    /// The diagnostics of an [`Invalid`](Self::Invalid) set (empty for the other kinds).
    pub fn diagnostics(&self) -> &[PolicyDiagnostic] {
        match self {
            Self::Invalid { diagnostics } => diagnostics,
            _ => &[],
        }
    }
}

/// A validated set of policies with their ids, files and reasons.
#[derive(Debug, Clone)]
pub struct CedarPolicies {
    pub(crate) set: PolicySet,
    /// Per tool, the policies whose action scope can match it (Cedar evaluates every policy of
    /// a set, and one that cannot match costs about as much as one that does), with their
    /// guards.
    by_tool: HashMap<String, ToolPolicies>,
    files: BTreeMap<String, String>,
    /// The `@reason` of each policy that has one (read at load: Cedar parses the annotation
    /// key on every look-up).
    reasons: HashMap<String, String>,
    pub(crate) schema_id: u64,
}

fn message_of(e: &(dyn Diagnostic + '_)) -> String {
    match e.help() {
        Some(help) => format!("{e} ({help})"),
        None => e.to_string(),
    }
}

/// The `*.cedar` files of `dir`, sorted by name, with their contents.
pub(crate) fn read_dir_sources(dir: &Path) -> Result<Vec<(String, String)>, PolicyLoadError> {
    let io = |path: &Path, source| PolicyLoadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "cedar") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, text))
        })
        .collect()
}

/// A fingerprint of the sources (names and contents), to notice changes when polling.
pub(crate) fn fingerprint(sources: &[(String, String)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    sources.hash(&mut hasher);
    hasher.finish()
}

impl CedarPolicies {
    /// Loads every `*.cedar` file of `dir` (not its subdirectories), in name order, and
    /// validates them against `schema`.
    ///
    /// A policy's id is its `@id("...")` annotation, or `<file>:<index>` (its position in the
    /// file, from 0). Its `@reason("...")` annotation is the reason a decision it makes gives.
    pub fn load_dir(schema: &CedarSchema, dir: impl AsRef<Path>) -> Result<Self, PolicyLoadError> {
        let dir = dir.as_ref();
        let sources = read_dir_sources(dir)?;
        if sources.is_empty() {
            return Err(PolicyLoadError::NoPolicies(dir.display().to_string()));
        }
        Self::from_sources(schema, sources)
    }

    /// Loads policies from `(name, text)` pairs, as if each were a file of that name.
    pub fn from_sources<N, T>(
        schema: &CedarSchema,
        sources: impl IntoIterator<Item = (N, T)>,
    ) -> Result<Self, PolicyLoadError>
    where
        N: Into<String>,
        T: AsRef<str>,
    {
        let mut diagnostics = Vec::new();
        let mut set = PolicySet::new();
        let mut files = BTreeMap::new();
        let mut names = Vec::new();
        for (name, text) in sources {
            let name: String = name.into();
            names.push(name.clone());
            let parsed = match PolicySet::from_str(text.as_ref()) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for error in errors.iter() {
                        diagnostics.push(PolicyDiagnostic {
                            file: name.clone(),
                            policy: None,
                            message: message_of(error),
                        });
                    }
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                diagnostics.push(PolicyDiagnostic {
                    file: name.clone(),
                    policy: None,
                    message: "templates (policies with `?principal` or `?resource` slots) are \
                              not supported"
                        .to_owned(),
                });
                continue;
            }
            // The parser names the policies of one text `policy0`, `policy1`, ... in order.
            let count = parsed.policies().count();
            for index in 0..count {
                let Some(policy) = parsed.policy(&PolicyId::new(format!("policy{index}"))) else {
                    continue;
                };
                let id = match policy.annotation(ID_ANNOTATION) {
                    Some(id) => id.to_owned(),
                    None => format!("{name}:{index}"),
                };
                if let Some(first) = files.get(&id) {
                    diagnostics.push(PolicyDiagnostic {
                        file: name.clone(),
                        policy: Some(id.clone()),
                        message: format!("the id is already used in {first}"),
                    });
                    continue;
                }
                files.insert(id.clone(), name.clone());
                if let Err(e) = set.add(policy.new_id(PolicyId::new(&id))) {
                    diagnostics.push(PolicyDiagnostic {
                        file: name.clone(),
                        policy: Some(id),
                        message: message_of(&e),
                    });
                }
            }
        }
        if !diagnostics.is_empty() {
            return Err(PolicyLoadError::Invalid { diagnostics });
        }
        if set.is_empty() {
            return Err(PolicyLoadError::NoPolicies(names.join(", ")));
        }
        let result = schema.validator().validate(&set, ValidationMode::Strict);
        let diagnostics: Vec<PolicyDiagnostic> = result
            .validation_errors()
            .map(|error| {
                let id = error.policy_id().to_string();
                PolicyDiagnostic {
                    file: files.get(&id).cloned().unwrap_or_default(),
                    policy: Some(id),
                    message: message_of(error),
                }
            })
            .collect();
        if !diagnostics.is_empty() {
            return Err(PolicyLoadError::Invalid { diagnostics });
        }
        let by_tool = split_by_tool(schema, &set)?;
        let reasons = set
            .policies()
            .filter_map(|policy| {
                let reason = policy.annotation(REASON_ANNOTATION)?;
                Some((policy.id().to_string(), reason.to_owned()))
            })
            .collect();
        Ok(Self {
            set,
            by_tool,
            files,
            reasons,
            schema_id: schema.id(),
        })
    }

    /// The ids of the policies, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the set holds no policy (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file policy `id` came from.
    pub fn file_of(&self, id: &str) -> Option<&str> {
        self.files.get(id).map(String::as_str)
    }

    /// The `@reason` of policy `id`.
    pub fn reason_of(&self, id: &str) -> Option<&str> {
        self.reasons.get(id).map(String::as_str)
    }

    /// The Cedar policy set.
    pub fn policy_set(&self) -> &PolicySet {
        &self.set
    }

    /// The policies that can apply to calls of `tool`: those whose action scope is any action
    /// or names the tool, less those a conjunct fixed by the tool's annotations rules out.
    /// Deciding with them is deciding with the whole set (a policy whose scope does not match
    /// is not satisfied and never evaluates its conditions; see [`Guard::excludes_tool`]).
    pub(crate) fn for_tool(&self, tool: &str) -> Option<&ToolPolicies> {
        self.by_tool.get(tool)
    }
}

/// How many distinct subsets of one tool's policies are kept (a subset is the policies whose
/// guards a call passes; calls of principals with the same groups, roles, ... share one).
const SUBSETS_PER_TOOL: usize = 256;

/// The policies that can apply to one tool, each with its [`Guard`].
#[derive(Debug, Clone)]
pub(crate) struct ToolPolicies {
    /// All of them.
    pub(crate) set: PolicySet,
    guarded: Vec<(Policy, Guard)>,
    /// Whether any guard has something to test.
    guards: bool,
    subsets: SubsetCache,
    /// When every policy that can apply to the tool is a `permit` without conditions whose
    /// scope any call of the tool satisfies (any principal, any resource, an action scope
    /// naming the tool's action or any action): their ids, sorted. Cedar would allow every
    /// well-formed call of the tool with exactly these policies, and no error is possible.
    pub(crate) always_allowed_by: Option<Vec<String>>,
}

/// The subsets built so far, by the bit mask of the policies they keep.
#[derive(Debug, Default)]
struct SubsetCache(RwLock<HashMap<Box<[u64]>, Arc<PolicySet>>>);

impl Clone for SubsetCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// The policies a call is decided with: a tool's whole set, or the subset its guards let
/// through.
#[derive(Debug)]
pub(crate) enum Selected<'a> {
    All(&'a PolicySet),
    Subset(Arc<PolicySet>),
}

impl std::ops::Deref for Selected<'_> {
    type Target = PolicySet;

    fn deref(&self) -> &PolicySet {
        match self {
            Self::All(set) => set,
            Self::Subset(set) => set,
        }
    }
}

impl ToolPolicies {
    fn new() -> Self {
        Self {
            set: PolicySet::new(),
            guarded: Vec::new(),
            guards: false,
            subsets: SubsetCache::default(),
            always_allowed_by: None,
        }
    }

    /// The policies Cedar must evaluate for a call with these facts: all but those whose guard
    /// is false (which Cedar would find not satisfied, without error). Same decision, same
    /// deciding policies, same errors as the whole set.
    pub(crate) fn select(&self, facts: &Facts<'_>) -> Selected<'_> {
        if !self.guards {
            return Selected::All(&self.set);
        }
        let mut mask = vec![0u64; self.guarded.len().div_ceil(64)].into_boxed_slice();
        let mut all = true;
        for (i, (_, guard)) in self.guarded.iter().enumerate() {
            if guard.excludes(facts) {
                all = false;
            } else if let Some(word) = mask.get_mut(i / 64) {
                *word |= 1u64 << (i % 64);
            }
        }
        if all {
            return Selected::All(&self.set);
        }
        let cached = self
            .subsets
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&mask)
            .cloned();
        if let Some(subset) = cached {
            return Selected::Subset(subset);
        }
        let kept = self.guarded.iter().enumerate().filter(|(i, _)| {
            mask.get(i / 64)
                .is_some_and(|word| word & (1u64 << (i % 64)) != 0)
        });
        match PolicySet::from_policies(kept.map(|(_, (policy, _))| policy.clone())) {
            Ok(subset) => {
                let subset = Arc::new(subset);
                let mut subsets = self
                    .subsets
                    .0
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if subsets.len() >= SUBSETS_PER_TOOL {
                    subsets.clear();
                }
                subsets.insert(mask, Arc::clone(&subset));
                Selected::Subset(subset)
            }
            // Cannot happen (the policies come from one valid set); the whole set is never
            // wrong.
            Err(_) => Selected::All(&self.set),
        }
    }
}

fn split_by_tool(
    schema: &CedarSchema,
    set: &PolicySet,
) -> Result<HashMap<String, ToolPolicies>, PolicyLoadError> {
    let tools: Vec<&str> = schema.tool_names().collect();
    let mut by_tool: HashMap<String, ToolPolicies> = tools
        .iter()
        .map(|t| ((*t).to_owned(), ToolPolicies::new()))
        .collect();
    let action_tool = |uid: &cedar_policy::EntityUid| schema.tool_of_action(uid);
    for policy in set.policies() {
        let targets: Vec<&str> = match policy.action_constraint() {
            ActionConstraint::Any => tools.clone(),
            ActionConstraint::Eq(uid) => action_tool(&uid).into_iter().collect(),
            ActionConstraint::In(uids) => {
                let named: Option<Vec<&str>> = uids.iter().map(action_tool).collect();
                // An action group would contain other actions: keep such a policy everywhere.
                named.unwrap_or_else(|| tools.clone())
            }
        };
        // A policy whose JSON form cannot be had gets no guard: it is always evaluated.
        let guard = policy
            .to_json()
            .map(|json| Guard::of_policy_json(&json))
            .unwrap_or_default();
        for tool in targets {
            let Some(entry) = schema.tool(tool) else {
                continue;
            };
            if guard.excludes_tool(tool, &entry.annotations) {
                continue;
            }
            if let Some(subset) = by_tool.get_mut(tool) {
                subset.guards |= !guard.is_empty();
                subset.guarded.push((policy.clone(), guard.clone()));
                subset
                    .set
                    .add(policy.clone())
                    .map_err(|e| PolicyLoadError::Invalid {
                        diagnostics: vec![PolicyDiagnostic {
                            file: String::new(),
                            policy: Some(policy.id().to_string()),
                            message: message_of(&e),
                        }],
                    })?;
            }
        }
    }
    for (tool, subset) in &mut by_tool {
        let Some(entry) = schema.tool(tool) else {
            continue;
        };
        let unconditional = |policy: &Policy| {
            policy.effect() == cedar_policy::Effect::Permit
                && !policy.has_non_scope_constraint()
                && policy.principal_constraint() == PrincipalConstraint::Any
                && policy.resource_constraint() == ResourceConstraint::Any
                && match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(uid) => uid == entry.action,
                    ActionConstraint::In(uids) => uids.contains(&entry.action),
                }
        };
        if !subset.guarded.is_empty() && subset.guarded.iter().all(|(p, _)| unconditional(p)) {
            let mut ids: Vec<String> = subset
                .guarded
                .iter()
                .map(|(p, _)| p.id().to_string())
                .collect();
            ids.sort();
            subset.always_allowed_by = Some(ids);
        }
    }
    Ok(by_tool)
}
