//! The ID-JAG claim set (JAG §3.1; the claims table of `docs/requirements.md`), typed.

use ema_jose::{AudienceRule, ClaimError, Claims, UnixTime};
use serde_json::{Map, Value};

use crate::ids::{ClientId, Issuer, JwtId, Resource, ScopeSet, Subject};

/// Registered claim names this type reads; everything else lands in [`IdJagClaims::extra`].
const KNOWN: [&str; 23] = [
    "iss",
    "sub",
    "aud",
    "client_id",
    "jti",
    "exp",
    "iat",
    "nbf",
    "resource",
    "scope",
    "authorization_details",
    "act",
    "tenant",
    "auth_time",
    "acr",
    "amr",
    "aud_tenant",
    "aud_sub",
    "email",
    "sub_id",
    "cnf",
    "groups",
    "roles",
];

/// Why a claim set is not a well-formed ID-JAG (step 7 of the validation order in `docs/requirements.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdJagClaimsError {
    /// A claim is missing, empty where a value is required, or has the wrong JSON type, or a
    /// date is malformed.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// `scope` is a string but not a valid space-delimited scope list.
    #[error("`scope` is not a valid scope list")]
    MalformedScope,
    /// `resource` is an empty array.
    #[error("`resource` is an empty array")]
    EmptyResource,
    /// `cnf` has no `jkt`, or other confirmation methods this implementation cannot honour.
    #[error("`cnf` uses a confirmation method other than `jkt`")]
    UnsupportedConfirmation,
}

/// The claims of an ID-JAG.
///
/// Required: `iss`, `sub`, `aud` (one value), `client_id`, `jti`, `exp`, `iat` (JAG-2); the
/// string ones must not be empty (D-25 by analogy). The rest are optional, but a present known
/// claim of the wrong JSON type is an error, never a default; unknown claims are kept in
/// [`IdJagClaims::extra`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct IdJagClaims {
    /// `iss`: the IdP's issuer identifier.
    pub iss: Issuer,
    /// `sub`: the IdP's subject id for the user (JAG-5).
    pub sub: Subject,
    /// `aud`: the authorization server's issuer identifier (JAG-3).
    pub aud: Issuer,
    /// `client_id`: the client's id at that authorization server (JAG-4).
    pub client_id: ClientId,
    /// `jti`: unique id, the replay key with `iss` (SEC-1).
    pub jti: JwtId,
    /// `exp`.
    pub exp: UnixTime,
    /// `iat`.
    pub iat: UnixTime,
    /// `nbf`.
    pub nbf: Option<UnixTime>,
    /// `resource`: one or more RFC 8707 resource ids (JAG-6).
    pub resource: Option<Vec<Resource>>,
    /// `scope`, parsed from its space-delimited string (D-13).
    pub scope: Option<ScopeSet>,
    /// `authorization_details` (RFC 9396).
    pub authorization_details: Option<Vec<Value>>,
    /// `act` (RFC 8693 §4.1).
    pub act: Option<Map<String, Value>>,
    /// `tenant`: the IdP tenant.
    pub tenant: Option<String>,
    /// `auth_time`.
    pub auth_time: Option<UnixTime>,
    /// `acr`.
    pub acr: Option<String>,
    /// `amr`.
    pub amr: Option<Vec<String>>,
    /// `aud_tenant`: the tenant at the authorization server.
    pub aud_tenant: Option<String>,
    /// `aud_sub`: the user's id at the authorization server.
    pub aud_sub: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `sub_id` (RFC 9493 subject identifier, -04).
    pub sub_id: Option<Map<String, Value>>,
    /// `cnf.jkt`: the RFC 7638 thumbprint of the DPoP key the token is bound to.
    pub cnf_jkt: Option<String>,
    /// `groups` (not registered by JAG; emitted by this project's IdP for the tool-call layer).
    pub groups: Option<Vec<String>>,
    /// `roles` (as `groups`).
    pub roles: Option<Vec<String>>,
    /// Every other claim, unchanged.
    pub extra: Map<String, Value>,
}

fn opt_string(c: &Claims, claim: &'static str) -> Result<Option<String>, ClaimError> {
    Ok(c.string(claim)?.map(str::to_owned))
}

fn opt_strings(c: &Claims, claim: &'static str) -> Result<Option<Vec<String>>, ClaimError> {
    let wrong = ClaimError::WrongType {
        claim,
        expected: "an array of strings",
    };
    match c.get(claim) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| wrong.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong),
    }
}

fn opt_object(c: &Claims, claim: &'static str) -> Result<Option<Map<String, Value>>, ClaimError> {
    match c.get(claim) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err(ClaimError::WrongType {
            claim,
            expected: "an object",
        }),
    }
}

impl IdJagClaims {
    /// Reads a verified claim set as an ID-JAG, checking that every required claim is present
    /// and every known claim has its JSON type (JAG-2, D-7, D-13). Time, audience value, issuer
    /// trust and client binding are the validator's job.
    pub fn from_claims(c: &Claims) -> Result<Self, IdJagClaimsError> {
        // JAG-2 / AS-2: the required claims, with their JSON types, and (as D-25 rules for
        // access tokens) never the empty string: an empty `sub` names nobody, an empty `jti`
        // would make every such token share one replay key.
        let iss = Issuer::new(c.non_empty_string("iss")?);
        let sub = Subject::new(c.non_empty_string("sub")?);
        // D-13 / JAG-3: `aud` is a string or an array of exactly one string.
        let aud = match c.audience(AudienceRule::Single)?.first().copied() {
            None => return Err(ClaimError::Missing { claim: "aud" }.into()),
            Some("") => return Err(ClaimError::Empty { claim: "aud" }.into()),
            Some(aud) => Issuer::new(aud),
        };
        let client_id = ClientId::new(c.non_empty_string("client_id")?);
        let jti = JwtId::new(c.non_empty_string("jti")?);
        // D-7: NumericDates are JSON numbers.
        let exp = c
            .numeric_date("exp")?
            .ok_or(ClaimError::Missing { claim: "exp" })?;
        let iat = c
            .numeric_date("iat")?
            .ok_or(ClaimError::Missing { claim: "iat" })?;

        // A single string is read in place; arrays and wrong types through the value.
        let single = c.string("resource").ok().flatten();
        let resource = match single.map_or_else(|| c.get("resource"), |_| None) {
            None => single.map(|s| vec![Resource::new(s)]),
            Some(Value::String(s)) => Some(vec![Resource::new(s.as_str())]),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(IdJagClaimsError::EmptyResource);
            }
            Some(Value::Array(_)) => {
                opt_strings(c, "resource")?.map(|v| v.into_iter().map(Resource::new).collect())
            }
            Some(_) => {
                return Err(ClaimError::WrongType {
                    claim: "resource",
                    expected: "a string or an array of strings",
                }
                .into());
            }
        };
        // JAG-6 / D-25 by analogy: every resource value names something.
        if resource
            .as_ref()
            .is_some_and(|values| values.iter().any(|r| r.as_str().is_empty()))
        {
            return Err(ClaimError::Empty { claim: "resource" }.into());
        }
        // D-13: `scope` must be a JSON string.
        let scope = c
            .string("scope")?
            .map(|s| ScopeSet::parse(s).map_err(|_| IdJagClaimsError::MalformedScope))
            .transpose()?;
        let authorization_details = match c.get("authorization_details") {
            None => None,
            Some(Value::Array(items)) if items.iter().all(Value::is_object) => Some(items.clone()),
            Some(_) => {
                return Err(ClaimError::WrongType {
                    claim: "authorization_details",
                    expected: "an array of objects",
                }
                .into());
            }
        };
        let cnf_jkt = match opt_object(c, "cnf")? {
            None => None,
            Some(cnf) => match (cnf.get("jkt"), cnf.len()) {
                (Some(Value::String(jkt)), 1) if jkt.is_empty() => {
                    return Err(ClaimError::Empty { claim: "cnf.jkt" }.into());
                }
                (Some(Value::String(jkt)), 1) => Some(jkt.clone()),
                (Some(_), 1) => {
                    return Err(ClaimError::WrongType {
                        claim: "cnf.jkt",
                        expected: "a string",
                    }
                    .into());
                }
                _ => return Err(IdJagClaimsError::UnsupportedConfirmation),
            },
        };
        let sub_id = opt_object(c, "sub_id")?;
        if let Some(sub_id) = &sub_id
            && !sub_id.get("format").is_some_and(Value::is_string)
        {
            return Err(ClaimError::WrongType {
                claim: "sub_id",
                expected: "an object with a `format` string",
            }
            .into());
        }
        // Only the unknown claims are copied (reading them in place costs nothing for the rest).
        let extra = c
            .iter()
            .filter(|(k, _)| !KNOWN.contains(k))
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        Ok(Self {
            iss,
            sub,
            aud,
            client_id,
            jti,
            exp,
            iat,
            nbf: c.numeric_date("nbf")?,
            resource,
            scope,
            authorization_details,
            act: opt_object(c, "act")?,
            tenant: opt_string(c, "tenant")?,
            auth_time: c.numeric_date("auth_time")?,
            acr: opt_string(c, "acr")?,
            amr: opt_strings(c, "amr")?,
            aud_tenant: opt_string(c, "aud_tenant")?,
            aud_sub: opt_string(c, "aud_sub")?,
            email: opt_string(c, "email")?,
            sub_id,
            cnf_jkt,
            groups: opt_strings(c, "groups")?,
            roles: opt_strings(c, "roles")?,
            extra,
        })
    }

    /// The claim set as a JSON object, for signing. `aud` is written as a string (JAG-3),
    /// `resource` as a string when there is one value.
    pub fn to_object(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        put("iss", self.iss.as_str().into());
        put("sub", self.sub.as_str().into());
        put("aud", self.aud.as_str().into());
        put("client_id", self.client_id.as_str().into());
        put("jti", self.jti.as_str().into());
        put("iat", self.iat.as_secs().into());
        put("exp", self.exp.as_secs().into());
        if let Some(nbf) = self.nbf {
            put("nbf", nbf.as_secs().into());
        }
        match self.resource.as_deref() {
            None => {}
            Some([one]) => put("resource", one.as_str().into()),
            Some(many) => put(
                "resource",
                many.iter().map(|r| Value::from(r.as_str())).collect(),
            ),
        }
        if let Some(scope) = &self.scope {
            put("scope", scope.to_string().into());
        }
        if let Some(details) = &self.authorization_details {
            put("authorization_details", Value::Array(details.clone()));
        }
        if let Some(act) = &self.act {
            put("act", Value::Object(act.clone()));
        }
        let strings = [
            ("tenant", &self.tenant),
            ("acr", &self.acr),
            ("aud_tenant", &self.aud_tenant),
            ("aud_sub", &self.aud_sub),
            ("email", &self.email),
        ];
        for (name, value) in strings {
            if let Some(v) = value {
                put(name, v.as_str().into());
            }
        }
        if let Some(t) = self.auth_time {
            put("auth_time", t.as_secs().into());
        }
        for (name, value) in [
            ("amr", &self.amr),
            ("groups", &self.groups),
            ("roles", &self.roles),
        ] {
            if let Some(v) = value {
                put(name, v.iter().map(|s| Value::from(s.as_str())).collect());
            }
        }
        if let Some(sub_id) = &self.sub_id {
            put("sub_id", Value::Object(sub_id.clone()));
        }
        if let Some(jkt) = &self.cnf_jkt {
            let mut cnf = Map::new();
            cnf.insert("jkt".to_owned(), jkt.as_str().into());
            put("cnf", Value::Object(cnf));
        }
        for (k, v) in &self.extra {
            if !KNOWN.contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<IdJagClaims, IdJagClaimsError> {
        let Value::Object(m) = v else { unreachable!() };
        IdJagClaims::from_claims(&Claims::from_object(m))
    }

    fn example() -> Value {
        json!({"iss":"https://idp.acme.example","sub":"00u8k2Lq91","aud":"https://auth.tasks.example",
            "client_id":"tc_5f2a91","jti":"7c1e0b6a","iat":1767225590,"exp":1767225890,
            "resource":"https://mcp.tasks.example/mcp","scope":"tasks.read","auth_time":1767225000,
            "amr":["pwd","otp"],"email":"ana@acme.example","x-custom":{"a":1}})
    }

    #[test]
    fn digest_example_round_trips() {
        let c = parse(example()).unwrap();
        assert_eq!(c.aud, "https://auth.tasks.example");
        assert_eq!(
            c.resource.as_deref(),
            Some(&[Resource::new("https://mcp.tasks.example/mcp")][..])
        );
        assert_eq!(
            c.scope.as_ref().map(ToString::to_string).as_deref(),
            Some("tasks.read")
        );
        assert_eq!(c.extra.get("x-custom"), Some(&json!({"a":1})));
        assert_eq!(Value::Object(c.to_object()), example());
    }

    #[test]
    fn jag2_d25_required_claims_and_types() {
        for claim in ["iss", "sub", "aud", "client_id", "jti", "exp", "iat"] {
            let mut v = example();
            v.as_object_mut().unwrap().remove(claim);
            assert!(
                matches!(
                    parse(v),
                    Err(IdJagClaimsError::Claim(ClaimError::Missing { .. }))
                ),
                "{claim}"
            );
        }
        let with = |k: &str, val: Value| {
            let mut v = example();
            v.as_object_mut().unwrap().insert(k.to_owned(), val);
            parse(v)
        };
        // D-13: scope must be a string; aud an array of exactly one.
        assert!(matches!(
            with("scope", json!(["tasks.read"])),
            Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                claim: "scope",
                ..
            }))
        ));
        assert_eq!(
            with("scope", json!("a  b")),
            Err(IdJagClaimsError::MalformedScope)
        );
        assert!(matches!(
            with("aud", json!(["a", "b"])),
            Err(IdJagClaimsError::Claim(ClaimError::AudienceCount {
                len: 2
            }))
        ));
        assert!(with("aud", json!(["https://auth.tasks.example"])).is_ok());
        assert!(matches!(
            with("iss", json!(["x"])),
            Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                claim: "iss",
                ..
            }))
        ));
        assert!(matches!(
            with("exp", json!("1767225890")),
            Err(IdJagClaimsError::Claim(ClaimError::Date(_)))
        ));
        assert_eq!(
            with("resource", json!([])),
            Err(IdJagClaimsError::EmptyResource)
        );
        assert!(
            with("resource", json!(["a", "b"]))
                .unwrap()
                .resource
                .unwrap()
                .len()
                == 2
        );
        assert!(matches!(
            with("resource", json!(7)),
            Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                claim: "resource",
                ..
            }))
        ));
        assert_eq!(
            with("cnf", json!({"x5t#S256": "abc"})),
            Err(IdJagClaimsError::UnsupportedConfirmation)
        );
        assert_eq!(
            with("cnf", json!({"jkt": "abc"}))
                .unwrap()
                .cnf_jkt
                .as_deref(),
            Some("abc")
        );
        assert!(matches!(
            with("amr", json!("pwd")),
            Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                claim: "amr",
                ..
            }))
        ));
        // D-25 by analogy (JAG-2, AS-2): required strings are never empty.
        for claim in ["iss", "sub", "client_id", "jti", "aud"] {
            assert_eq!(
                with(claim, json!("")),
                Err(IdJagClaimsError::Claim(ClaimError::Empty { claim })),
                "{claim}"
            );
        }
        assert_eq!(
            with("aud", json!([""])),
            Err(IdJagClaimsError::Claim(ClaimError::Empty { claim: "aud" }))
        );
        for resource in [json!(""), json!(["https://mcp.tasks.example/mcp", ""])] {
            assert_eq!(
                with("resource", resource),
                Err(IdJagClaimsError::Claim(ClaimError::Empty {
                    claim: "resource"
                }))
            );
        }
        assert_eq!(
            with("cnf", json!({"jkt": ""})),
            Err(IdJagClaimsError::Claim(ClaimError::Empty {
                claim: "cnf.jkt"
            }))
        );
        for jkt in [json!(1), json!(null), json!(["abc"])] {
            assert_eq!(
                with("cnf", json!({ "jkt": jkt })),
                Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                    claim: "cnf.jkt",
                    expected: "a string"
                }))
            );
        }
        for cnf in [json!("abc"), json!(["abc"]), json!(null)] {
            assert!(matches!(
                with("cnf", cnf),
                Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                    claim: "cnf",
                    ..
                }))
            ));
        }
        for details in [json!({"type": "x"}), json!("x"), json!([1])] {
            assert!(matches!(
                with("authorization_details", details),
                Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                    claim: "authorization_details",
                    ..
                }))
            ));
        }
        for (claim, value) in [
            ("tenant", json!(1)),
            ("acr", json!(["urn:x"])),
            ("email", json!(true)),
            ("aud_sub", json!({})),
        ] {
            assert!(matches!(
                with(claim, value),
                Err(IdJagClaimsError::Claim(ClaimError::WrongType { claim: c, .. })) if c == claim
            ));
        }
        assert!(matches!(
            with("auth_time", json!("1767225000")),
            Err(IdJagClaimsError::Claim(ClaimError::Date(_)))
        ));
        assert!(matches!(
            with("sub_id", json!({"nameid": "x"})),
            Err(IdJagClaimsError::Claim(ClaimError::WrongType {
                claim: "sub_id",
                ..
            }))
        ));
    }
}
