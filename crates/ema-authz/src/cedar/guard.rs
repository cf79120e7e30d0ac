//! Policy guards: the leading conjuncts of a policy's condition that test only the principal,
//! the tool's annotations or the session, read from the policy's JSON (EST) form at load time.
//!
//! Cedar evaluates a policy's condition as one chain of `&&`: the scope constraints (which
//! cannot fail), then the `when` clauses in order, each left to right, stopping at the first
//! `false`. A guard is the longest prefix of that chain made of the forms below, each of
//! which this module evaluates exactly as Cedar would, or answers "cannot tell" (for example
//! an optional attribute the principal lacks, where Cedar would report an error). When the
//! guard's walk meets `false` after only `true`s, Cedar would also stop there, with the policy
//! not satisfied and no error: skipping the policy changes neither the decision, nor the
//! policies that decided, nor the errors reported. Any other outcome evaluates the policy.
//!
//! The forms (a literal may be on either side of a comparison):
//! - `principal.A.contains("v")`, `principal.A == lit`, `principal.A != lit`,
//!   `principal has A`;
//! - `context.tool.F` for the annotation flags, `context.tool.name == "t"`;
//! - `context.session.labels.contains("v")`, `context.session.tools_called.contains("v")`,
//!   and the session counters compared with a `Long` literal;
//! - `true`, `false`, and `!` of any of these.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::model::{Principal, SessionContext, ToolAnnotations};

/// A literal a principal attribute is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    String(String),
    Long(i64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "==" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }

    /// The same comparison with its operands swapped (`lit < x` is `x > lit`).
    fn flipped(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            other => other,
        }
    }

    fn holds(self, left: i64, right: i64) -> bool {
        match self {
            Self::Eq => left == right,
            Self::Ne => left != right,
            Self::Lt => left < right,
            Self::Le => left <= right,
            Self::Gt => left > right,
            Self::Ge => left >= right,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolFlag {
    ReadOnly,
    Destructive,
    Idempotent,
    OpenWorld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionSet {
    Labels,
    ToolsCalled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    ThisTool,
    Total,
    Destructive,
}

/// One conjunct of a guard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Const(bool),
    Not(Box<Atom>),
    PrincipalContains {
        attribute: String,
        value: String,
    },
    PrincipalEquals {
        attribute: String,
        value: Literal,
        equal: bool,
    },
    PrincipalHas(String),
    Tool(ToolFlag),
    ToolName {
        name: String,
        equal: bool,
    },
    SessionContains {
        set: SessionSet,
        value: String,
    },
    SessionCompare {
        counter: Counter,
        op: Comparison,
        value: i64,
    },
}

/// The principal attributes every principal entity has (the others are optional: Cedar fails
/// on reading one the principal lacks).
const REQUIRED: [&str; 8] = [
    "issuer",
    "subject",
    "client_id",
    "scopes",
    "groups",
    "roles",
    "amr",
    "delegation_depth",
];

/// The value of a principal attribute as the principal's Cedar entity holds it.
enum Attribute<'a> {
    String(&'a str),
    Long(i64),
    Bool(bool),
    Set(&'a BTreeSet<String>),
    List(&'a [Value]),
}

fn saturating_long(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The attribute `name` of the principal's entity (built by `principal_entity`, which refuses
/// mapped attributes of the wrong type before any policy is evaluated).
fn attribute<'a>(principal: &'a Principal, name: &str) -> Option<Attribute<'a>> {
    let string = |s: &'a Option<String>| s.as_deref().map(Attribute::String);
    match name {
        "issuer" => Some(Attribute::String(&principal.issuer)),
        "tenant" => string(&principal.tenant),
        "subject" => Some(Attribute::String(&principal.subject)),
        "client_id" => Some(Attribute::String(&principal.client_id)),
        "scopes" => Some(Attribute::Set(&principal.scopes)),
        "groups" => Some(Attribute::Set(&principal.groups)),
        "roles" => Some(Attribute::Set(&principal.roles)),
        "acr" => string(&principal.acr),
        "amr" => Some(Attribute::Set(&principal.amr)),
        "auth_time" => principal
            .auth_time
            .map(|t| Attribute::Long(saturating_long(t))),
        "token_jti" => string(&principal.token_jti),
        "idp_issuer" => string(&principal.idp_issuer),
        "idp_jti" => string(&principal.idp_jti),
        "delegation_depth" => Some(Attribute::Long(i64::from(principal.delegation_depth))),
        "trust_level" => principal.trust_level.map(Attribute::Long),
        _ => match principal.attributes.get(name)? {
            Value::String(s) => Some(Attribute::String(s)),
            Value::Bool(b) => Some(Attribute::Bool(*b)),
            Value::Number(n) => n.as_i64().map(Attribute::Long),
            Value::Array(items) => Some(Attribute::List(items)),
            _ => None,
        },
    }
}

fn flag(annotations: &ToolAnnotations, flag: ToolFlag) -> bool {
    match flag {
        ToolFlag::ReadOnly => annotations.read_only(),
        ToolFlag::Destructive => annotations.destructive(),
        ToolFlag::Idempotent => annotations.idempotent_hint.unwrap_or(false),
        ToolFlag::OpenWorld => annotations.open_world(),
    }
}

/// What a call offers the guards: the principal, the tool's name and annotations (those of the
/// schema's tool list, as in `context.tool`) and the session.
#[derive(Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub(crate) principal: &'a Principal,
    pub(crate) tool: &'a str,
    pub(crate) annotations: &'a ToolAnnotations,
    pub(crate) session: &'a SessionContext,
}

impl Atom {
    /// The conjunct's value for these facts, or `None` when Cedar would fail on it or this
    /// module cannot tell.
    fn eval(&self, facts: &Facts<'_>) -> Option<bool> {
        match self {
            Self::Const(b) => Some(*b),
            Self::Not(inner) => inner.eval(facts).map(|b| !b),
            Self::PrincipalContains {
                attribute: a,
                value,
            } => match attribute(facts.principal, a)? {
                Attribute::Set(set) => Some(set.contains(value)),
                Attribute::List(items) => Some(
                    items
                        .iter()
                        .any(|item| item.as_str() == Some(value.as_str())),
                ),
                _ => None,
            },
            Self::PrincipalEquals {
                attribute: a,
                value,
                equal,
            } => {
                let same = match (attribute(facts.principal, a)?, value) {
                    (Attribute::String(s), Literal::String(v)) => s == v,
                    (Attribute::Long(n), Literal::Long(v)) => n == *v,
                    (Attribute::Bool(b), Literal::Bool(v)) => b == *v,
                    _ => return None,
                };
                Some(same == *equal)
            }
            Self::PrincipalHas(a) => Some(attribute(facts.principal, a).is_some()),
            Self::Tool(f) => Some(flag(facts.annotations, *f)),
            Self::ToolName { name, equal } => Some((facts.tool == name) == *equal),
            Self::SessionContains { set, value } => Some(match set {
                SessionSet::Labels => facts.session.labels.contains(value),
                SessionSet::ToolsCalled => facts.session.calls.contains_key(value),
            }),
            Self::SessionCompare { counter, op, value } => {
                let n = match counter {
                    Counter::ThisTool => facts.session.count(facts.tool),
                    Counter::Total => facts.session.total_calls,
                    Counter::Destructive => facts.session.destructive_calls,
                };
                Some(op.holds(saturating_long(n), *value))
            }
        }
    }

    /// Whether Cedar could fail on this conjunct for some principal (reading an optional
    /// attribute the principal lacks).
    fn may_fail(&self) -> bool {
        match self {
            Self::Not(inner) => inner.may_fail(),
            Self::PrincipalContains { attribute, .. } | Self::PrincipalEquals { attribute, .. } => {
                !REQUIRED.contains(&attribute.as_str())
            }
            _ => false,
        }
    }

    /// The conjunct's value for a tool, when it depends on nothing else.
    fn of_tool(&self, tool: &str, annotations: &ToolAnnotations) -> Option<bool> {
        match self {
            Self::Const(b) => Some(*b),
            Self::Not(inner) => inner.of_tool(tool, annotations).map(|b| !b),
            Self::Tool(f) => Some(flag(annotations, *f)),
            Self::ToolName { name, equal } => Some((tool == name) == *equal),
            _ => None,
        }
    }
}

/// The leading conjuncts of a policy's condition that can be decided from the principal, the
/// tool and the session (possibly none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Guard {
    atoms: Vec<Atom>,
}

impl Guard {
    /// The guard of a policy, from its JSON (EST) form.
    pub(crate) fn of_policy_json(policy: &Value) -> Self {
        let mut atoms = Vec::new();
        let clauses = policy
            .get("conditions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        'clauses: for clause in clauses {
            if clause.get("kind").and_then(Value::as_str) != Some("when") {
                break;
            }
            let Some(body) = clause.get("body") else {
                break;
            };
            let mut conjuncts = Vec::new();
            flatten_and(body, &mut conjuncts);
            for conjunct in conjuncts {
                match atom(conjunct) {
                    Some(a) => atoms.push(a),
                    None => break 'clauses,
                }
            }
        }
        Self { atoms }
    }

    /// Whether the guard has nothing to test.
    pub(crate) fn is_empty(&self) -> bool {
        self.atoms.is_empty()
    }

    /// True when Cedar would find the policy not satisfied, without error, for these facts:
    /// the walk meets `false` after only `true`s.
    pub(crate) fn excludes(&self, facts: &Facts<'_>) -> bool {
        for atom in &self.atoms {
            match atom.eval(facts) {
                Some(true) => {}
                Some(false) => return true,
                None => return false,
            }
        }
        false
    }

    /// True when the policy can never be satisfied for calls of `tool`, whoever calls and
    /// whatever the session: a conjunct fixed by the tool is `false`, and none before it can
    /// fail.
    pub(crate) fn excludes_tool(&self, tool: &str, annotations: &ToolAnnotations) -> bool {
        for atom in &self.atoms {
            match atom.of_tool(tool, annotations) {
                Some(false) => return true,
                Some(true) => {}
                None if atom.may_fail() => return false,
                None => {}
            }
        }
        false
    }
}

/// The operands of a `&&` chain, in evaluation order.
fn flatten_and<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) => match (and.get("left"), and.get("right")) {
            (Some(left), Some(right)) => {
                flatten_and(left, out);
                flatten_and(right, out);
            }
            _ => out.push(expr),
        },
        None => out.push(expr),
    }
}

/// The only key of a one-key JSON object (how the EST writes an operator and its operands).
fn single(expr: &Value) -> Option<(&str, &Value)> {
    let object = expr.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// `principal`, `context.tool.name`, ...: a variable followed by attribute reads.
fn path(expr: &Value) -> Option<Vec<&str>> {
    match single(expr)? {
        ("Var", Value::String(var)) => Some(vec![var.as_str()]),
        (".", access) => {
            let mut p = path(access.get("left")?)?;
            p.push(access.get("attr")?.as_str()?);
            Some(p)
        }
        _ => None,
    }
}

fn literal(expr: &Value) -> Option<Literal> {
    match single(expr)? {
        ("Value", Value::String(s)) => Some(Literal::String(s.clone())),
        ("Value", Value::Bool(b)) => Some(Literal::Bool(*b)),
        ("Value", Value::Number(n)) => n.as_i64().map(Literal::Long),
        _ => None,
    }
}

fn string_literal(expr: &Value) -> Option<String> {
    match literal(expr)? {
        Literal::String(s) => Some(s),
        _ => None,
    }
}

fn atom(expr: &Value) -> Option<Atom> {
    let (op, operands) = single(expr)?;
    match op {
        "Value" => match operands {
            Value::Bool(b) => Some(Atom::Const(*b)),
            _ => None,
        },
        "!" => Some(Atom::Not(Box::new(atom(operands.get("arg")?)?))),
        "." => match path(expr)?.as_slice() {
            ["context", "tool", f] => Some(Atom::Tool(match *f {
                "read_only" => ToolFlag::ReadOnly,
                "destructive" => ToolFlag::Destructive,
                "idempotent" => ToolFlag::Idempotent,
                "open_world" => ToolFlag::OpenWorld,
                _ => return None,
            })),
            _ => None,
        },
        "has" => match (
            path(operands.get("left")?)?.as_slice(),
            operands.get("attr")?,
        ) {
            (["principal"], Value::String(a)) => Some(Atom::PrincipalHas(a.clone())),
            _ => None,
        },
        "contains" => {
            let value = string_literal(operands.get("right")?)?;
            match path(operands.get("left")?)?.as_slice() {
                ["principal", a] => Some(Atom::PrincipalContains {
                    attribute: (*a).to_owned(),
                    value,
                }),
                ["context", "session", "labels"] => Some(Atom::SessionContains {
                    set: SessionSet::Labels,
                    value,
                }),
                ["context", "session", "tools_called"] => Some(Atom::SessionContains {
                    set: SessionSet::ToolsCalled,
                    value,
                }),
                _ => None,
            }
        }
        _ => {
            let op = Comparison::parse(op)?;
            let (left, right) = (operands.get("left")?, operands.get("right")?);
            let (subject, value, op) = match (path(left), literal(right)) {
                (Some(p), Some(v)) => (p, v, op),
                _ => (path(right)?, literal(left)?, op.flipped()),
            };
            comparison(&subject, value, op)
        }
    }
}

fn comparison(subject: &[&str], value: Literal, op: Comparison) -> Option<Atom> {
    let equal = match op {
        Comparison::Eq => Some(true),
        Comparison::Ne => Some(false),
        _ => None,
    };
    match (subject, value) {
        (["principal", a], value) => Some(Atom::PrincipalEquals {
            attribute: (*a).to_owned(),
            value,
            equal: equal?,
        }),
        (["context", "tool", "name"], Literal::String(name)) => Some(Atom::ToolName {
            name,
            equal: equal?,
        }),
        (["context", "session", c], Literal::Long(value)) => Some(Atom::SessionCompare {
            counter: match *c {
                "tool_calls" => Counter::ThisTool,
                "total_calls" => Counter::Total,
                "destructive_calls" => Counter::Destructive,
                _ => return None,
            },
            op,
            value,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard_of(text: &str) -> Guard {
        let policy: cedar_policy::Policy = text.parse().unwrap();
        Guard::of_policy_json(&policy.to_json().unwrap())
    }

    #[test]
    fn reads_the_leading_conjuncts_up_to_the_first_other_form() {
        let g = guard_of(
            r#"permit (principal, action, resource) when {
                principal.groups.contains("a") && principal has project &&
                principal.project == "p" && context.tool.destructive &&
                context.session.destructive_calls >= 3 && 2 < context.session.total_calls &&
                context.session.labels.contains("l") && !context.tool.open_world &&
                context.input.x like "a*" && principal.roles.contains("never-read")
            };"#,
        );
        assert_eq!(g.atoms.len(), 8, "{g:?}");
        assert_eq!(
            g.atoms[5],
            Atom::SessionCompare {
                counter: Counter::Total,
                op: Comparison::Gt,
                value: 2
            }
        );
        // An `unless` first, or an unknown form first: no guard.
        assert!(
            guard_of(
                r#"permit (principal, action, resource) unless { principal.groups.contains("a") };"#
            )
            .is_empty()
        );
        assert!(guard_of(r#"permit (principal, action, resource) when { principal.groups.contains("a") || true };"#).is_empty());
        assert!(guard_of("permit (principal, action, resource);").is_empty());
    }

    #[test]
    fn excludes_only_on_a_false_after_trues() {
        let g = guard_of(
            r#"permit (principal, action, resource) when {
                principal has tenant && principal.tenant == "acme" && principal.groups.contains("g")
            };"#,
        );
        let session = SessionContext::default();
        let annotations = ToolAnnotations::default();
        let excludes = |g: &Guard, p: &Principal| {
            g.excludes(&Facts {
                principal: p,
                tool: "t",
                annotations: &annotations,
                session: &session,
            })
        };
        let base = Principal::new("i", "s", "c");
        assert!(excludes(&g, &base), "no tenant: `has` is false");
        let acme = base.clone().with_tenant("acme");
        assert!(excludes(&g, &acme), "tenant acme, not in g");
        assert!(!excludes(&g, &acme.clone().with_groups(["g"])));
        assert!(excludes(&g, &base.clone().with_tenant("other")));
        // Without the `has` guard first, a missing tenant is Cedar's error: evaluate.
        let unguarded = Guard {
            atoms: vec![Atom::PrincipalEquals {
                attribute: "tenant".into(),
                value: Literal::String("acme".into()),
                equal: true,
            }],
        };
        assert!(!excludes(&unguarded, &base));
        assert!(excludes(&unguarded, &base.clone().with_tenant("x")));
        // A mapped attribute compared with a literal of another type: cannot tell.
        let typed = Guard {
            atoms: vec![Atom::PrincipalEquals {
                attribute: "level".into(),
                value: Literal::String("3".into()),
                equal: true,
            }],
        };
        assert!(!excludes(
            &typed,
            &base.clone().with_attribute("level", json!(3))
        ));
    }

    #[test]
    fn excludes_a_tool_only_when_nothing_before_can_fail() {
        let read_only = ToolAnnotations {
            read_only_hint: Some(true),
            ..ToolAnnotations::default()
        };
        let destructive = ToolAnnotations::default();
        let g = guard_of(
            r#"forbid (principal, action, resource) when {
                principal.groups.contains("g") && context.tool.destructive
            };"#,
        );
        assert!(g.excludes_tool("t", &read_only));
        assert!(!g.excludes_tool("t", &destructive));
        let g = guard_of(
            r#"forbid (principal, action, resource) when {
                principal.tenant == "x" && context.tool.destructive
            };"#,
        );
        assert!(
            !g.excludes_tool("t", &read_only),
            "the tenant read may fail"
        );
        let g =
            guard_of(r#"forbid (principal, action, resource) when { context.tool.name != "t" };"#);
        assert!(g.excludes_tool("t", &destructive));
        assert!(!g.excludes_tool("u", &destructive));
    }
}
