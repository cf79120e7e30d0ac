//! Target for the Cedar engine of ema-authz: tool calls with arbitrary arguments (and
//! arbitrary token claims) turned into Cedar requests and entities and decided by the example
//! policies of `examples/config/policies/`.

use std::sync::OnceLock;

use ema_authz::cedar::{
    AttributeType, CedarEngine, CedarPolicies, ClaimAttribute, PrincipalMapping,
};
use ema_authz::{CedarSchema, PolicyEngine, Principal, SessionContext, ToolCall, ToolDefinition};
use serde_json::{Map, Value};

const TOOLS_JSON: &str = include_str!("../../../examples/config/policies/tools.json");
const POLICIES: [(&str, &str); 5] = [
    (
        "files.cedar",
        include_str!("../../../examples/config/policies/files.cedar"),
    ),
    (
        "general.cedar",
        include_str!("../../../examples/config/policies/general.cedar"),
    ),
    (
        "payments.cedar",
        include_str!("../../../examples/config/policies/payments.cedar"),
    ),
    (
        "session.cedar",
        include_str!("../../../examples/config/policies/session.cedar"),
    ),
    (
        "sql.cedar",
        include_str!("../../../examples/config/policies/sql.cedar"),
    ),
];

/// The tools of the example tool list, in order (the first input byte picks one).
pub const CEDAR_TOOLS: [&str; 6] = [
    "sql_query",
    "write_file",
    "pay_invoice",
    "read_secret",
    "http_fetch",
    "delete_record",
];

/// The principal mapping of the example: the `project` claim as a string attribute.
pub fn cedar_mapping() -> PrincipalMapping {
    PrincipalMapping::new().with_attribute(ClaimAttribute::new(
        "project",
        "project",
        AttributeType::String,
    ))
}

struct Fixture {
    engine: CedarEngine,
    tools: Vec<ToolDefinition>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let listing: Value = serde_json::from_str(TOOLS_JSON).unwrap_or(Value::Null);
        let tools: Vec<ToolDefinition> = listing
            .get("tools")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| ToolDefinition::from_mcp_json(t).ok())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            tools.len(),
            CEDAR_TOOLS.len(),
            "example tool list unreadable"
        );
        let schema = match CedarSchema::new(&tools, &cedar_mapping()) {
            Ok(schema) => schema,
            Err(e) => broken_fixture(&format!("example schema: {e}")),
        };
        let engine = CedarPolicies::from_sources(&schema, POLICIES)
            .map_err(|e| e.to_string())
            .and_then(|p| CedarEngine::new(schema, p).map_err(|e| e.to_string()));
        match engine {
            Ok(engine) => Fixture { engine, tools },
            Err(e) => broken_fixture(&format!("example policies: {e}")),
        }
    })
}

/// Fails every run: the committed example tools or policies no longer load.
#[expect(
    clippy::panic,
    reason = "a fuzz target reports a broken fixture by panicking"
)]
fn broken_fixture(what: &str) -> ! {
    panic!("fixture broken: {what}")
}

/// A principal from the bits of one byte: groups, roles, the web scope and the project.
fn principal_from_bits(bits: u8) -> Principal {
    let mut p = Principal::new("https://as.example", "fuzz", "agent");
    for (bit, group) in [(0, "analysts"), (1, "dba"), (2, "ops")] {
        if bits & (1 << bit) != 0 {
            p.groups.insert(group.to_owned());
        }
    }
    for (bit, role) in [(3, "ap_clerk"), (4, "controller")] {
        if bits & (1 << bit) != 0 {
            p.roles.insert(role.to_owned());
        }
    }
    if bits & (1 << 5) != 0 {
        p.scopes.insert("tools.web".to_owned());
    }
    match bits >> 6 {
        1 => p.with_attribute("project", Value::from("apollo")),
        2 => p.with_attribute("project", Value::from("zephyr")),
        3 => p.with_attribute("project", Value::from("hermes")),
        _ => p,
    }
}

/// How the arguments of a call compare with its tool's input schema, judged here without the
/// engine.
enum Shape {
    /// Exactly as declared: the oracle's decision must be the engine's.
    WellFormed,
    /// A number where an integer is declared that is not an `i64` (a fraction, or out of
    /// range): JSON Schema counts `5.0` as an integer, so the engine may accept it as 5.
    LooseInteger,
    /// Anything else (a member missing, undeclared or of the wrong type): must be denied.
    Malformed,
}

fn shape(tool: &str, args: &Map<String, Value>) -> Shape {
    let (required, optional): (&[&str], &[&str]) = match tool {
        "sql_query" => (&["query"], &["database"]),
        "write_file" => (&["path", "content"], &[]),
        "pay_invoice" => (&["invoice_id", "amount_cents", "currency"], &[]),
        "read_secret" => (&["name"], &[]),
        "http_fetch" => (&["url"], &[]),
        _ => (&["id"], &[]),
    };
    if !required.iter().all(|r| args.contains_key(*r))
        || !args
            .keys()
            .all(|k| required.contains(&k.as_str()) || optional.contains(&k.as_str()))
    {
        return Shape::Malformed;
    }
    let mut loose = false;
    for (name, value) in args {
        let ok = match (name.as_str(), value) {
            ("amount_cents", Value::Number(n)) => {
                loose |= n.as_i64().is_none();
                true
            }
            ("currency", Value::String(c)) => c == "EUR" || c == "USD",
            ("amount_cents" | "currency", _) => false,
            (_, value) => value.is_string(),
        };
        if !ok {
            return Shape::Malformed;
        }
    }
    if loose {
        Shape::LooseInteger
    } else {
        Shape::WellFormed
    }
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> &'a str {
    args.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The example policies restated in Rust, for well-formed arguments (`amount` given apart, so
/// that a loose integer can be judged at the value the engine may have read).
fn oracle(
    p: &Principal,
    tool: &str,
    args: &Map<String, Value>,
    amount: Option<i64>,
    s: &SessionContext,
) -> bool {
    let (destructive, open_world) = match tool {
        "sql_query" | "delete_record" => (true, false),
        "pay_invoice" | "http_fetch" => (false, true),
        _ => (false, false),
    };
    if open_world && s.has_label("secret_read") {
        return false;
    }
    if destructive && s.destructive_calls >= 3 {
        return false;
    }
    let project = p.attributes.get("project").and_then(Value::as_str);
    match tool {
        "sql_query" => {
            let q = str_arg(args, "query");
            p.groups.contains("dba")
                || (p.groups.contains("analysts")
                    && q.starts_with("SELECT ")
                    && !q.contains(';')
                    && !q.contains("--")
                    && !q.contains("/*"))
        }
        "write_file" => {
            let path = str_arg(args, "path");
            ["apollo", "zephyr"].iter().any(|name| {
                project == Some(*name)
                    && path.starts_with(&format!("/projects/{name}/"))
                    && !path.contains("..")
            })
        }
        "pay_invoice" => match amount {
            Some(a) => {
                (p.roles.contains("ap_clerk") && a > 0 && a <= 100_000)
                    || (p.roles.contains("controller") && a > 0 && a <= 5_000_000)
            }
            None => false,
        },
        "read_secret" | "delete_record" => p.groups.contains("ops"),
        "http_fetch" => p.scopes.contains("tools.web"),
        _ => false,
    }
}

/// `cedar_request`: one tool call decided by the example policies.
///
/// Input: byte 0 picks the tool (`% 6`), the `secret_read` label and the session's destructive
/// count; byte 1 the principal's groups, roles, web scope and project; the rest is JSON: an
/// object is the arguments, a two-element array is `[claims, arguments]` (the principal then
/// comes from the claims through [`Principal::from_claims`]), anything else becomes the
/// argument `_` (undeclared, so malformed).
///
/// Invariants: nothing panics; arguments that do not match the tool's input schema are denied
/// by no policy; for well-formed arguments the engine's decision is the oracle's (the policies
/// restated in Rust); a loose integer is allowed only where the oracle allows its integral
/// value; whenever a call is allowed, `may_call` is true for its tool.
pub fn cedar_request(data: &[u8]) {
    let [b0, b1, rest @ ..] = data else {
        return;
    };
    let fx = fixture();
    let Some((tool_index, tool_name)) = CEDAR_TOOLS
        .iter()
        .enumerate()
        .nth(usize::from(*b0) % CEDAR_TOOLS.len())
    else {
        return;
    };
    let mut session = SessionContext::default();
    if (b0 / 6) % 2 == 1 {
        session.labels.insert("secret_read".to_owned());
    }
    session.destructive_calls = u64::from((b0 / 12) % 5);

    let Ok(json) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let (principal, args) = match json {
        Value::Object(args) => (principal_from_bits(*b1), args),
        Value::Array(pair) if pair.len() == 2 => {
            let mut pair = pair.into_iter();
            let (Some(claims), Some(args)) = (pair.next(), pair.next()) else {
                return;
            };
            let Some(claims) = claims.as_object() else {
                return;
            };
            let Ok(principal) = Principal::from_claims(claims, &cedar_mapping()) else {
                return;
            };
            match args {
                Value::Object(args) => (principal, args),
                other => (principal, Map::from_iter([("_".to_owned(), other)])),
            }
        }
        other => (
            principal_from_bits(*b1),
            Map::from_iter([("_".to_owned(), other)]),
        ),
    };

    let call = ToolCall::new("https://mcp.example/mcp", *tool_name, args);
    let decision = fx.engine.decide(&principal, &call, &session);
    let args = &call.arguments;
    match shape(tool_name, args) {
        Shape::Malformed => {
            assert!(
                !decision.is_allowed(),
                "malformed arguments allowed: {args:?}"
            );
            assert!(
                decision.policies.is_empty(),
                "a policy decided malformed arguments"
            );
        }
        Shape::WellFormed => {
            let amount = args.get("amount_cents").and_then(Value::as_i64);
            let expected = oracle(&principal, tool_name, args, amount, &session);
            assert_eq!(
                decision.is_allowed(),
                expected,
                "engine and oracle disagree on {tool_name} {args:?}: {decision:?}"
            );
        }
        Shape::LooseInteger => {
            if decision.is_allowed() {
                let amount = args.get("amount_cents").and_then(Value::as_f64);
                let integral = amount.filter(|a| a.fract() == 0.0 && a.abs() < 9.0e15);
                #[expect(clippy::cast_possible_truncation, reason = "integral and in range")]
                let amount = integral.map(|a| a as i64);
                assert!(
                    oracle(&principal, tool_name, args, amount, &session),
                    "a loose integer was allowed beyond the policy: {args:?}"
                );
            }
        }
    }
    if decision.is_allowed() {
        let tool = fx.tools.get(tool_index);
        assert!(
            tool.is_some_and(|t| fx.engine.may_call(&principal, t, &session)),
            "allowed but hidden from tools/list"
        );
    }
}
