//! Fixtures: the running example of `docs/requirements.md` ("The flow") as one IdP and one MCP authorization
//! server, request builders, token forgers and the response checks every test shares.
//!
//! Time is the fixed [`NOW`]; tokens are dated relative to it. Keys are generated per [`Fx`]
//! so that every test (and every matrix row) starts from fresh replay stores.

use std::future::Future;
use std::sync::Arc;

use base64::Engine as _;
use ema_grant::form::encode_component;
use ema_grant::{
    AccessTokenIssuer, AccessTokenValidator, AdminPolicy, AuthMethod, CLIENT_ASSERTION_TYPE,
    ClientCredential, ClientRegistry, GroupPolicy, GroupRule, ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE,
    InMemoryReplayStore, JWT_BEARER, JwtBearerGrant, JwtBearerGrantBuilder, PolicyDecision,
    PolicyRequest, RegisteredClient, ReplayStore, TOKEN_EXCHANGE, TargetServer, TokenExchangeGrant,
    TokenExchangeGrantBuilder,
};
use ema_id_jag::{
    Directory, IdJagIssuer, Issuer, LocalSubject, Resource, ResourceConfig, ResourceRegistry,
    ScopeSet, SubjectResolver, TrustRegistry, TrustedIssuer, UnknownScopes,
};
use ema_jose::{
    Algorithm, AlgorithmSet, JwkSet, KeyRing, KeySource, SigningKey, StaticKeySource, UnixTime,
    random_id,
};
use serde_json::{Map, Value, json};

/// The fixed "now" of every test (2026-01-01T00:00:00Z). Never the wall clock.
pub(crate) const NOW: UnixTime = UnixTime::from_secs(1_767_225_600);

/// `NOW` shifted by `delta` seconds, as a JSON number.
pub(crate) fn at(delta: i64) -> Value {
    json!(
        NOW.as_secs()
            .checked_add_signed(delta)
            .expect("time in range")
    )
}

// The enterprise IdP.
pub(crate) const IDP: &str = "https://idp.acme.example";
pub(crate) const IDP_TOKEN_ENDPOINT: &str = "https://idp.acme.example/oauth2/token";
pub(crate) const IDP_CLIENT: &str = "desk-idp-01";
pub(crate) const IDP_SECRET: &str = "idp-s3cr3t-01";
/// An IdP client using `private_key_jwt` (mapped to [`PK_CLIENT`] at the AS).
pub(crate) const IDP_PK_CLIENT: &str = "desk-idp-pk";
/// An IdP client with no client-id mapping at the AS (JAG-4 → `access_denied`).
pub(crate) const IDP_UNMAPPED: &str = "desk-idp-unmapped";
pub(crate) const IDP_UNMAPPED_SECRET: &str = "idp-s3cr3t-unmapped";
/// An IdP client that may not use token exchange.
pub(crate) const IDP_NO_TX: &str = "desk-idp-nox";
pub(crate) const IDP_NO_TX_SECRET: &str = "idp-s3cr3t-nox";
/// An IdP client registered as public (mapped to [`PUBLIC_CLIENT`] at the AS).
pub(crate) const IDP_PUBLIC: &str = "desk-idp-public";
/// An IdP client registered for `client_secret_post` (D-24; mapped to [`POST_CLIENT`]).
pub(crate) const IDP_POST_CLIENT: &str = "desk-idp-post";
pub(crate) const IDP_POST_SECRET: &str = "idp-s3cr3t-post";
pub(crate) const AS_ALIAS: &str = "urn:acme:as:tasks";

// The MCP authorization server.
pub(crate) const AS: &str = "https://auth.tasks.example";
pub(crate) const TOKEN_ENDPOINT: &str = "https://auth.tasks.example/token";
pub(crate) const TASKS: &str = "https://mcp.tasks.example/mcp";
/// A second resource: no default scopes, unknown scopes dropped (D-20, D-21).
pub(crate) const NOTES: &str = "https://mcp.notes.example/mcp";
/// A third resource that demands DPoP-bound tokens (AS-18).
pub(crate) const VAULT: &str = "https://mcp.vault.example/mcp";
pub(crate) const CLIENT: &str = "tc_5f2a91";
pub(crate) const SECRET: &str = "s3cr3t";
/// A client authenticating with `private_key_jwt`.
pub(crate) const PK_CLIENT: &str = "tc_pkjwt_77";
/// A client registered for `client_secret_post` (D-24); [`CLIENT`] uses the default,
/// `client_secret_basic`.
pub(crate) const POST_CLIENT: &str = "tc_post_42";
pub(crate) const POST_SECRET: &str = "p0st-s3cr3t";
/// A client registered for the authorization-code grant only.
pub(crate) const CODE_CLIENT: &str = "tc_codeonly_3";
pub(crate) const CODE_SECRET: &str = "c0de-s3cr3t";
/// A client whose id and secret need form-urlencoding inside Basic (D-11).
pub(crate) const D11_CLIENT: &str = "tc:d11";
pub(crate) const D11_SECRET: &str = "s3+cr3t";
/// A client registered as public (no credential): accepted only where public clients are
/// enabled (D-11).
pub(crate) const PUBLIC_CLIENT: &str = "tc_public_9";
/// A Client ID Metadata Document URL (a public client, D-11).
pub(crate) const CIMD_CLIENT: &str = "https://app.example/client.json";

// Another authorization server the IdP knows.
pub(crate) const OTHER_AS: &str = "https://auth.other.example";
pub(crate) const OTHER_RESOURCE: &str = "https://mcp.other.example/mcp";

/// A second, multi-tenant issuer trusted for tenant `acme` only (D-14).
pub(crate) const MULTI: &str = "https://login.multi.example";

// Users.
pub(crate) const USER: &str = "00u8k2Lq91";
pub(crate) const USER_LOCAL: &str = "u-17";
pub(crate) const EMAIL: &str = "ana@acme.example";
/// In group `readers`: `tasks.read` on TASKS only.
pub(crate) const READER: &str = "00uR3ad3r5";
/// Known to the IdP, assigned to no group.
pub(crate) const NO_GROUP: &str = "00uN0Gr0up";
/// In group `eng`, but the policy demands MFA (`amr` containing `otp`) for them (TX-11).
pub(crate) const MFA_USER: &str = "00uMfaUs3r";
/// A user in the `eng` group whom the IdP has disabled since they signed in (RV-1).
pub(crate) const DISABLED_USER: &str = "00uD1sab1d";
/// Known at the AS by email only (email linking, D-14).
pub(crate) const LINKED_EMAIL: &str = "linked@acme.example";
pub(crate) const MULTI_USER: &str = "m-0001";

// TX-3, TX-5: subject token types the matrices send.
pub(crate) use ema_metadata::urn::{
    REFRESH_TOKEN as REFRESH_TOKEN_TYPE, SAML2 as SAML2_TOKEN_TYPE,
};

/// The jwt-bearer grant as configured here: the bare name, every part erased, so the matrices
/// run through `DynKeySource`, `DynSubjectResolver` and `DynReplayStore`.
pub(crate) type AsGrant = JwtBearerGrant;
/// The token-exchange grant as configured here (erased likewise, `DynAdminPolicy` included).
pub(crate) type TxGrant = TokenExchangeGrant;

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).expect("scope literal")
}

fn key(alg: Algorithm, kid: Option<&str>) -> SigningKey {
    SigningKey::generate(alg, kid.map(str::to_owned)).expect("key generation")
}

/// The admin policy of the IdP: [`GroupPolicy`], plus a step-up demand for [`MFA_USER`] when
/// the ID token's `amr` lacks `otp` (TX-11).
#[derive(Debug, Clone)]
pub(crate) struct TestPolicy {
    groups: GroupPolicy,
    mfa_for: Vec<String>,
}

impl AdminPolicy for TestPolicy {
    fn decide(&self, request: &PolicyRequest<'_>) -> impl Future<Output = PolicyDecision> + Send {
        let otp = request
            .id_token
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|amr| amr.iter().any(|m| m == "otp"));
        let decision = if request.subject == DISABLED_USER {
            // RV-1: the reference IdP's view of a user disabled since signing in.
            PolicyDecision::InactiveSubject {
                reason: "the user is disabled",
            }
        } else if self.mfa_for.iter().any(|s| s == request.subject) && !otp {
            PolicyDecision::StepUp {
                max_age: Some(300),
                acr_values: Some("urn:acme:acr:mfa".into()),
            }
        } else {
            self.groups.decide_now(request)
        };
        std::future::ready(decision)
    }
}

/// Which server a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum To {
    /// The authorization server as configured by default.
    As,
    /// The same, accepting public CIMD clients (D-11).
    AsPublic,
    /// The same, governing [`TASKS`] only (D-4b).
    AsSingle,
    /// The IdP's token exchange.
    Idp,
    /// The IdP accepting the legacy requested token type (D-10).
    IdpLegacy,
    /// The IdP with a client registry that accepts public clients (TX-2).
    IdpPublic,
}

/// Every key of the running example.
#[derive(Debug)]
pub(crate) struct Keys {
    /// The IdP's signing keys (ES256, `idp-k1`): ID tokens and ID-JAGs.
    pub(crate) idp: Arc<KeyRing>,
    /// Published in the IdP's JWKS with `use: enc`: set aside (D-19).
    pub(crate) idp_enc: SigningKey,
    /// The authorization server's access-token keys.
    pub(crate) as_ring: Arc<KeyRing>,
    /// The multi-tenant issuer's key (EdDSA).
    pub(crate) multi: SigningKey,
    /// The `private_key_jwt` clients' key.
    pub(crate) client: SigningKey,
    /// An untrusted key that claims the IdP's `kid`.
    pub(crate) stranger: SigningKey,
    /// An ES384 key (opt-in everywhere since D-26, and never allowed for the IdP).
    pub(crate) es384: SigningKey,
    /// An ES512 key (not on the default allow-list).
    pub(crate) es512: SigningKey,
    /// A client's DPoP key.
    pub(crate) dpop: SigningKey,
    /// Another DPoP key.
    pub(crate) dpop_other: SigningKey,
}

impl Keys {
    fn generate() -> Self {
        Self {
            idp: Arc::new(KeyRing::new(key(Algorithm::ES256, Some("idp-k1")))),
            idp_enc: key(Algorithm::ES256, Some("idp-enc-1")),
            as_ring: Arc::new(KeyRing::new(key(Algorithm::ES256, Some("as-k1")))),
            multi: key(Algorithm::EdDSA, Some("multi-k1")),
            client: key(Algorithm::ES256, Some("client-k1")),
            stranger: key(Algorithm::ES256, Some("idp-k1")),
            es384: key(Algorithm::ES384, Some("idp-k384")),
            es512: key(Algorithm::ES512, Some("idp-k512")),
            dpop: key(Algorithm::ES256, None),
            dpop_other: key(Algorithm::ES256, None),
        }
    }
}

/// The fixture: keys and both servers, each with its own fresh replay store.
#[derive(Debug)]
pub(crate) struct Fx {
    pub(crate) keys: Keys,
    pub(crate) as_default: AsGrant,
    pub(crate) as_public: AsGrant,
    pub(crate) as_single: AsGrant,
    pub(crate) idp: TxGrant,
    pub(crate) idp_legacy: TxGrant,
    pub(crate) idp_public: TxGrant,
}

impl Fx {
    pub(crate) fn new() -> Self {
        let keys = Keys::generate();
        let as_default = build_as(&keys, false, resources());
        let as_public = build_as(&keys, true, resources());
        let as_single = build_as(&keys, false, single_resource());
        let idp = build_idp(&keys, false, false);
        let idp_legacy = build_idp(&keys, true, false);
        let idp_public = build_idp(&keys, false, true);
        Self {
            keys,
            as_default,
            as_public,
            as_single,
            idp,
            idp_legacy,
            idp_public,
        }
    }

    /// The IdP's active signing key.
    pub(crate) fn idp_key(&self) -> Arc<SigningKey> {
        self.keys.idp.active()
    }

    /// The key source of the authorization server: the IdP's JWKS with unusable entries beside
    /// the good key (D-19), and the multi-tenant issuer's key.
    pub(crate) fn as_key_source(&self) -> StaticKeySource {
        as_key_source(&self.keys)
    }

    /// The IdP's own keys, for ID-token validation.
    pub(crate) fn idp_key_source(&self) -> StaticKeySource {
        StaticKeySource::new().with_issuer(IDP, self.keys.idp.jwks())
    }

    /// A fresh jwt-bearer grant configured like [`Fx::as_default`], with its own replay store.
    pub(crate) fn as_grant(&self) -> AsGrant {
        build_as(&self.keys, false, resources())
    }

    /// A jwt-bearer grant like [`Fx::as_default`] checking and feeding `revoker` (RV-11, RV-12).
    pub(crate) fn as_grant_with_revoker(&self, revoker: ema_grant::Revoker) -> AsGrant {
        as_builder(
            &self.keys,
            as_key_source(&self.keys),
            directory(),
            false,
            resources(),
        )
        .revoker(revoker)
        .replay_store(InMemoryReplayStore::new(10_000))
        .build()
        .unwrap()
    }

    /// The standard jwt-bearer grant with access tokens of `lifetime` seconds, and `revoker`.
    pub(crate) fn as_grant_with_lifetime(
        &self,
        revoker: Option<ema_grant::Revoker>,
        lifetime: u64,
    ) -> AsGrant {
        let mut builder = JwtBearerGrant::builder(
            AccessTokenIssuer::new(Issuer::new(AS), self.keys.as_ring.clone())
                .with_lifetime(lifetime),
            as_key_source(&self.keys),
            directory(),
        )
        .trust_registry(trust())
        .resource_registry(resources())
        .client_registry(as_clients(&self.keys, false))
        .token_endpoint(TOKEN_ENDPOINT);
        if let Some(revoker) = revoker {
            builder = builder.revoker(revoker);
        }
        builder
            .replay_store(InMemoryReplayStore::new(10_000))
            .build()
            .unwrap()
    }

    /// A jwt-bearer grant like [`Fx::as_grant_with_revoker`] over `replay`, redeeming ID-JAGs
    /// through `redeemer` when one is given (else the revoker, then the replay store).
    pub(crate) fn as_grant_redeeming<R: ReplayStore + 'static>(
        &self,
        revoker: ema_grant::Revoker,
        replay: R,
        redeemer: Option<Arc<dyn ema_grant::IdJagRedeemer>>,
    ) -> AsGrant {
        let mut builder = as_builder(
            &self.keys,
            as_key_source(&self.keys),
            directory(),
            false,
            resources(),
        )
        .revoker(revoker)
        .replay_store(replay);
        if let Some(redeemer) = redeemer {
            builder = builder.redeemer(redeemer);
        }
        builder.build().unwrap()
    }

    /// A jwt-bearer grant over other key, subject and replay implementations.
    pub(crate) fn jwt_bearer<K: KeySource, S: SubjectResolver, R: ReplayStore>(
        &self,
        keys: K,
        subjects: S,
        replay: R,
    ) -> JwtBearerGrant<K, S, R> {
        assemble_as(&self.keys, keys, subjects, replay, false, resources())
    }

    /// A token-exchange grant over other key and replay implementations.
    pub(crate) fn token_exchange<K: KeySource, R: ReplayStore>(
        &self,
        keys: K,
        replay: R,
    ) -> TokenExchangeGrant<K, TestPolicy, R> {
        assemble_idp(&self.keys, keys, replay, false, false)
    }

    /// The builder of [`token_exchange`](Self::token_exchange), for tests that set more knobs.
    pub(crate) fn token_exchange_builder<K: KeySource, R: ReplayStore>(
        &self,
        keys: K,
        replay: R,
    ) -> TokenExchangeGrantBuilder<K, TestPolicy, R> {
        idp_builder(&self.keys, keys, false).replay_store(replay)
    }

    /// The resource server's view: validates access tokens for `resource`.
    pub(crate) fn at_validator(&self, resource: &str) -> AccessTokenValidator<StaticKeySource> {
        AccessTokenValidator::new(
            Issuer::new(AS),
            Resource::new(resource),
            StaticKeySource::new().with_issuer(AS, self.keys.as_ring.jwks()),
        )
    }

    /// Sends `req` to its server at [`NOW`] and checks the invariants of every response.
    pub(crate) fn send(&self, req: &Req) -> Reply {
        let http = req.build();
        let response = match req.to {
            To::As => pollster::block_on(self.as_default.handle(&http, NOW)),
            To::AsPublic => pollster::block_on(self.as_public.handle(&http, NOW)),
            To::AsSingle => pollster::block_on(self.as_single.handle(&http, NOW)),
            To::Idp => pollster::block_on(self.idp.handle(&http, NOW)),
            To::IdpLegacy => pollster::block_on(self.idp_legacy.handle(&http, NOW)),
            To::IdpPublic => pollster::block_on(self.idp_public.handle(&http, NOW)),
        };
        let reply = Reply::check(response);
        reply.assert_no_leak(&req.sensitive());
        if let (200, Some(token)) = (reply.status, reply.body["access_token"].as_str()) {
            // Interoperability oracle: what we mint validates under `jsonwebtoken`.
            match req.to {
                To::As | To::AsPublic | To::AsSingle => {
                    crate::oracle::check_minted(
                        token,
                        &self.keys.as_ring.jwks(),
                        "at+jwt",
                        AS,
                        NOW,
                    );
                }
                To::Idp | To::IdpLegacy | To::IdpPublic => crate::oracle::check_minted(
                    token,
                    &self.keys.idp.jwks(),
                    "oauth-id-jag+jwt",
                    IDP,
                    NOW,
                ),
            }
        }
        reply
    }

    /// Sends `req` and insists on a 200.
    pub(crate) fn ok(&self, req: &Req) -> Reply {
        let reply = self.send(req);
        assert_eq!(reply.status, 200, "expected success, got {}", reply.raw);
        reply
    }

    // ----- ID-JAGs -----

    /// The claims of a good ID-JAG for [`USER`], [`CLIENT`] and [`TASKS`].
    pub(crate) fn jag_claims(&self) -> Value {
        json!({
            "iss": IDP, "sub": USER, "aud": AS, "client_id": CLIENT,
            "jti": random_id().expect("jti"), "iat": at(-10), "exp": at(290),
            "resource": TASKS, "scope": "tasks.read tasks.write",
            "auth_time": at(-600), "amr": ["pwd", "otp"],
        })
    }

    /// A good ID-JAG with `overrides` merged into its claims (`null` removes a claim).
    pub(crate) fn jag(&self, overrides: Value) -> String {
        self.jag_h(json!({}), overrides)
    }

    /// As [`Fx::jag`], with `header` merged into `{"typ": "oauth-id-jag+jwt"}` (`null` removes).
    pub(crate) fn jag_h(&self, header: Value, overrides: Value) -> String {
        self.jag_signed(&self.idp_key(), header, overrides)
    }

    /// As [`Fx::jag_h`], signed by `key` (whose `alg` and `kid` go into the header).
    pub(crate) fn jag_signed(&self, key: &SigningKey, header: Value, overrides: Value) -> String {
        let header = merge(json!({"typ": "oauth-id-jag+jwt"}), header);
        let claims = merge(self.jag_claims(), overrides);
        key.sign_with_header(obj(header), claims.to_string().as_bytes())
            .expect("sign")
    }

    // ----- ID tokens -----

    /// The claims of a good ID token for [`USER`], issued to [`IDP_CLIENT`].
    pub(crate) fn id_token_claims(&self) -> Value {
        json!({
            "iss": IDP, "sub": USER, "aud": IDP_CLIENT, "iat": at(-60), "exp": at(3540),
            "auth_time": at(-60), "nonce": "n-4f1", "amr": ["pwd", "otp"], "email": EMAIL,
        })
    }

    /// A good ID token (`typ` `JWT`, signed by the IdP) with `overrides` merged.
    pub(crate) fn id_token(&self, overrides: Value) -> String {
        self.id_token_h(json!({}), overrides)
    }

    /// As [`Fx::id_token`], with `header` merged into `{"typ": "JWT"}`.
    pub(crate) fn id_token_h(&self, header: Value, overrides: Value) -> String {
        let header = merge(json!({"typ": "JWT"}), header);
        let claims = merge(self.id_token_claims(), overrides);
        self.idp_key()
            .sign_with_header(obj(header), claims.to_string().as_bytes())
            .expect("sign")
    }

    // ----- client assertions and DPoP proofs -----

    /// A `private_key_jwt` assertion of [`PK_CLIENT`] for the authorization server.
    pub(crate) fn client_assertion(&self, overrides: Value) -> String {
        self.client_assertion_h(json!({}), overrides)
    }

    /// As [`Fx::client_assertion`], with `header` merged into
    /// `{"typ": "client-authentication+jwt"}`.
    pub(crate) fn client_assertion_h(&self, header: Value, overrides: Value) -> String {
        self.client_assertion_signed(&self.keys.client, header, overrides)
    }

    /// As [`Fx::client_assertion_h`], signed by `key`.
    pub(crate) fn client_assertion_signed(
        &self,
        key: &SigningKey,
        header: Value,
        overrides: Value,
    ) -> String {
        let header = merge(json!({"typ": "client-authentication+jwt"}), header);
        let claims = merge(
            json!({
                "iss": PK_CLIENT, "sub": PK_CLIENT, "aud": TOKEN_ENDPOINT,
                "jti": random_id().expect("jti"), "iat": at(0), "exp": at(60),
            }),
            overrides,
        );
        key.sign_with_header(obj(header), claims.to_string().as_bytes())
            .expect("sign")
    }

    /// A DPoP proof by `key` for `htu`, with `overrides` merged into its claims.
    pub(crate) fn dpop_proof(&self, key: &SigningKey, htu: &str, overrides: Value) -> String {
        dpop_proof_h(key, json!({}), htu, overrides)
    }
}

/// A DPoP proof by `key`: header `{"typ": "dpop+jwt", "jwk": <public key>}` merged with
/// `header`; claims `jti`, `htm` POST, `htu`, `iat` now, merged with `overrides`.
pub(crate) fn dpop_proof_h(key: &SigningKey, header: Value, htu: &str, overrides: Value) -> String {
    let base =
        json!({"typ": "dpop+jwt", "jwk": Value::Object(key.verifying_key().public_jwk().clone())});
    let claims = merge(
        json!({"jti": random_id().expect("jti"), "htm": "POST", "htu": htu, "iat": at(0)}),
        overrides,
    );
    key.sign_with_header(obj(merge(base, header)), claims.to_string().as_bytes())
        .expect("sign")
}

/// A compact JWS with exactly this header (nothing overwritten) over `payload`, signed by `key`
/// (or carrying `fake_sig` when there is no key).
pub(crate) fn compact(header: &Value, payload: &[u8], key: Option<&SigningKey>) -> String {
    let b64 = ema_jose::base64url::encode;
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = match key {
        Some(k) => k.sign_bytes(input.as_bytes()).expect("sign"),
        None => b"not-a-real-signature-at-all".to_vec(),
    };
    format!("{input}.{}", b64(&sig))
}

/// Decodes the header and the claims of a compact JWS without verifying it.
pub(crate) fn peek(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let seg = parts.next().expect("segment");
        let bytes = ema_jose::base64url::decode(seg.as_bytes()).expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("JSON")
    };
    let header = next();
    let claims = next();
    (header, claims)
}

/// Merges `overrides` into the object `base`; a `null` override removes the member.
pub(crate) fn merge(base: Value, overrides: Value) -> Value {
    let mut base = obj(base);
    for (k, v) in obj(overrides) {
        if v.is_null() {
            base.remove(&k);
        } else {
            base.insert(k, v);
        }
    }
    Value::Object(base)
}

/// The object inside a `json!({...})` literal.
pub(crate) fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

// ----- the servers -----

fn resources() -> ResourceRegistry {
    ResourceRegistry::new()
        .with(
            ResourceConfig::new(TASKS, ["tasks.read", "tasks.write"])
                .with_default_scopes(scopes("tasks.read")),
        )
        .with(
            ResourceConfig::new(NOTES, ["notes.read", "notes.write"])
                .with_unknown_scopes(UnknownScopes::Drop),
        )
        .with(ResourceConfig::new(VAULT, ["vault.read"]).with_require_dpop(true))
}

fn single_resource() -> ResourceRegistry {
    ResourceRegistry::new().with(
        ResourceConfig::new(TASKS, ["tasks.read", "tasks.write"])
            .with_default_scopes(scopes("tasks.read")),
    )
}

fn trust() -> TrustRegistry {
    TrustRegistry::new()
        .with(TrustedIssuer::new(IDP).with_algorithms(AlgorithmSet::of(&[Algorithm::ES256])))
        .with(TrustedIssuer::new(MULTI).with_tenant("acme"))
}

/// The authorization server's subject directory (AS-16, D-14).
pub(crate) fn directory() -> Directory {
    Directory::new()
        .with_subject(
            IDP,
            None,
            USER,
            LocalSubject::new(USER_LOCAL)
                .with_groups(["eng"])
                .with_roles(["member"]),
        )
        .with_subject(IDP, None, READER, LocalSubject::new("u-18"))
        .with_subject(IDP, None, MFA_USER, LocalSubject::new("u-19"))
        .with_subject(
            MULTI,
            Some("acme"),
            MULTI_USER,
            LocalSubject::new("u-m1").with_tenant("acme"),
        )
        .with_email(IDP, LINKED_EMAIL, LocalSubject::new("u-42"))
        // D-14: `sub` mapping wins; this entry must never be chosen for USER.
        .with_email(IDP, EMAIL, LocalSubject::new("u-email-of-ana"))
}

/// The IdP's JWKS as the AS fetched it: the good key plus three unusable entries (D-19).
fn idp_jwks(keys: &Keys) -> JwkSet {
    let mut doc = keys.idp.jwks().to_public_json();
    let entries = doc["keys"].as_array_mut().expect("keys");
    let mut enc = keys.idp_enc.verifying_key().public_jwk().clone();
    enc.insert("use".into(), "enc".into());
    entries.push(Value::Object(enc));
    entries.push(json!({"kty": "oct", "kid": "idp-hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}));
    entries
        .push(json!({"kty": "EC", "crv": "secp256k1", "kid": "idp-k256k", "x": "AA", "y": "AA"}));
    let set = JwkSet::parse(doc.to_string().as_bytes()).expect("JWKS");
    assert_eq!(set.keys().len(), 1, "D-19: the good key stays usable");
    assert_eq!(
        set.rejected().len(),
        3,
        "D-19: unusable entries are set aside"
    );
    set
}

fn as_key_source(keys: &Keys) -> StaticKeySource {
    StaticKeySource::new()
        .with_issuer(IDP, idp_jwks(keys))
        .with_issuer(
            MULTI,
            JwkSet::from_keys([keys.multi.verifying_key().clone()]),
        )
}

fn as_clients(keys: &Keys, allow_public: bool) -> ClientRegistry {
    ClientRegistry::new([AS, TOKEN_ENDPOINT])
        .with(RegisteredClient::new(
            CLIENT,
            ClientCredential::secret(SECRET),
        ))
        .with(RegisteredClient::new(
            PK_CLIENT,
            ClientCredential::PrivateKeyJwt {
                keys: Arc::new(JwkSet::from_keys([keys.client.verifying_key().clone()])),
            },
        ))
        .with(
            RegisteredClient::new(CODE_CLIENT, ClientCredential::secret(CODE_SECRET))
                .with_grant_types(["authorization_code"]),
        )
        .with(RegisteredClient::new(
            D11_CLIENT,
            ClientCredential::secret(D11_SECRET),
        ))
        .with(RegisteredClient::new(
            PUBLIC_CLIENT,
            ClientCredential::Public,
        ))
        .with(
            RegisteredClient::new(POST_CLIENT, ClientCredential::secret(POST_SECRET))
                .with_auth_method(AuthMethod::ClientSecretPost)
                .unwrap(),
        )
        .allow_public(allow_public)
}

fn as_builder<K: KeySource, S: SubjectResolver>(
    keys: &Keys,
    key_source: K,
    subjects: S,
    allow_public: bool,
    resources: ResourceRegistry,
) -> JwtBearerGrantBuilder<K, S> {
    JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(AS), keys.as_ring.clone()),
        key_source,
        subjects,
    )
    .trust_registry(trust())
    .resource_registry(resources)
    .client_registry(as_clients(keys, allow_public))
    .token_endpoint(TOKEN_ENDPOINT)
}

fn assemble_as<K: KeySource, S: SubjectResolver, R: ReplayStore>(
    keys: &Keys,
    key_source: K,
    subjects: S,
    replay: R,
    allow_public: bool,
    resources: ResourceRegistry,
) -> JwtBearerGrant<K, S, R> {
    as_builder(keys, key_source, subjects, allow_public, resources)
        .replay_store(replay)
        .build_typed()
        .unwrap()
}

fn build_as(keys: &Keys, allow_public: bool, resources: ResourceRegistry) -> AsGrant {
    as_builder(
        keys,
        as_key_source(keys),
        directory(),
        allow_public,
        resources,
    )
    .replay_store(InMemoryReplayStore::new(10_000))
    .build()
    .unwrap()
}

fn policy() -> TestPolicy {
    let groups = GroupPolicy::new()
        .with_member(USER, ["eng"])
        .with_member(MFA_USER, ["eng"])
        .with_member(DISABLED_USER, ["eng"])
        .with_member(READER, ["readers"])
        .with_member(NO_GROUP, Vec::<String>::new())
        .with_rule(GroupRule::new(
            "eng",
            AS,
            scopes("tasks.read tasks.write notes.read notes.write vault.read"),
        ))
        .with_rule(GroupRule::new("readers", AS, scopes("tasks.read")).with_resources([TASKS]))
        .with_rule(GroupRule::new("eng", OTHER_AS, scopes("other.read")));
    TestPolicy {
        groups,
        mfa_for: vec![MFA_USER.to_owned()],
    }
}

fn idp_clients(keys: &Keys, allow_public: bool) -> ClientRegistry {
    ClientRegistry::new([IDP, IDP_TOKEN_ENDPOINT])
        .with(RegisteredClient::new(
            IDP_CLIENT,
            ClientCredential::secret(IDP_SECRET),
        ))
        .with(RegisteredClient::new(
            IDP_PK_CLIENT,
            ClientCredential::PrivateKeyJwt {
                keys: Arc::new(JwkSet::from_keys([keys.client.verifying_key().clone()])),
            },
        ))
        .with(RegisteredClient::new(
            IDP_UNMAPPED,
            ClientCredential::secret(IDP_UNMAPPED_SECRET),
        ))
        .with(
            RegisteredClient::new(IDP_NO_TX, ClientCredential::secret(IDP_NO_TX_SECRET))
                .with_grant_types([JWT_BEARER]),
        )
        .with(RegisteredClient::new(IDP_PUBLIC, ClientCredential::Public))
        .with(
            RegisteredClient::new(IDP_POST_CLIENT, ClientCredential::secret(IDP_POST_SECRET))
                .with_auth_method(AuthMethod::ClientSecretPost)
                .unwrap(),
        )
        .allow_public(allow_public)
}

fn idp_builder<K: KeySource>(
    keys: &Keys,
    id_token_keys: K,
    allow_public: bool,
) -> TokenExchangeGrantBuilder<K, TestPolicy> {
    TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(IDP), keys.idp.clone()),
        id_token_keys,
        policy(),
    )
    .client_registry(idp_clients(keys, allow_public))
    .token_endpoint(IDP_TOKEN_ENDPOINT)
    .target(
        TargetServer::new(AS, [TASKS, NOTES, VAULT])
            .with_alias(AS_ALIAS)
            .with_client(IDP_CLIENT, CLIENT)
            .with_client(IDP_PK_CLIENT, PK_CLIENT)
            .with_client(IDP_PUBLIC, PUBLIC_CLIENT)
            .with_client(IDP_POST_CLIENT, POST_CLIENT),
    )
    .target(TargetServer::new(OTHER_AS, [OTHER_RESOURCE]).with_client(IDP_CLIENT, "oc_1"))
}

fn assemble_idp<K: KeySource, R: ReplayStore>(
    keys: &Keys,
    id_token_keys: K,
    replay: R,
    legacy: bool,
    allow_public: bool,
) -> TokenExchangeGrant<K, TestPolicy, R> {
    idp_builder(keys, id_token_keys, allow_public)
        .replay_store(replay)
        .accept_legacy_token_type(legacy)
        .build_typed()
        .unwrap()
}

fn build_idp(keys: &Keys, legacy: bool, allow_public: bool) -> TxGrant {
    idp_builder(
        keys,
        StaticKeySource::new().with_issuer(IDP, keys.idp.jwks()),
        allow_public,
    )
    .replay_store(InMemoryReplayStore::new(10_000))
    .accept_legacy_token_type(legacy)
    .build()
    .unwrap()
}

// ----- requests -----

/// A token request under construction.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) to: To,
    method: &'static str,
    uri: String,
    content_type: Option<String>,
    authorization: Option<String>,
    basic_secret: Option<String>,
    dpop: Option<String>,
    extra_headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    raw_body: Option<String>,
}

/// The `Authorization: Basic` value for `id` and `secret`, each form-urlencoded first
/// (RFC 6749 §2.3.1, D-11).
pub(crate) fn basic(id: &str, secret: &str) -> String {
    basic_raw(&format!(
        "{}:{}",
        encode_component(id),
        encode_component(secret)
    ))
}

/// The `Authorization: Basic` value for `user_pass` exactly as given.
pub(crate) fn basic_raw(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

impl Req {
    fn post(to: To, uri: &str) -> Self {
        Self {
            to,
            method: "POST",
            uri: uri.to_owned(),
            content_type: Some("application/x-www-form-urlencoded".into()),
            authorization: None,
            basic_secret: None,
            dpop: None,
            extra_headers: Vec::new(),
            params: Vec::new(),
            raw_body: None,
        }
    }

    /// Hop 3 of the flow in `docs/requirements.md`: [`CLIENT`] by Basic, `assertion`, `resource` [`TASKS`].
    pub(crate) fn bearer(assertion: &str) -> Self {
        Self::post(To::As, "/token")
            .basic(CLIENT, SECRET)
            .set("grant_type", JWT_BEARER)
            .set("assertion", assertion)
            .set("resource", TASKS)
    }

    /// Hop 2 of the flow in `docs/requirements.md`: [`IDP_CLIENT`] by Basic, audience [`AS`], resource [`TASKS`], scope
    /// `tasks.read`, the ID token as subject.
    pub(crate) fn exchange(subject_token: &str) -> Self {
        Self::post(To::Idp, "/oauth2/token")
            .basic(IDP_CLIENT, IDP_SECRET)
            .set("grant_type", TOKEN_EXCHANGE)
            .set("requested_token_type", ID_JAG_TOKEN_TYPE)
            .set("audience", AS)
            .set("resource", TASKS)
            .set("scope", "tasks.read")
            .set("subject_token", subject_token)
            .set("subject_token_type", ID_TOKEN_TYPE)
    }

    /// Sends to another server.
    pub(crate) fn to(mut self, to: To) -> Self {
        self.to = to;
        self
    }

    /// Sets `name` (replacing every occurrence).
    pub(crate) fn set(self, name: &str, value: &str) -> Self {
        let mut r = self.remove(name);
        r.params.push((name.to_owned(), value.to_owned()));
        r
    }

    /// Appends another occurrence of `name`.
    pub(crate) fn add(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Removes `name`.
    pub(crate) fn remove(mut self, name: &str) -> Self {
        self.params.retain(|(n, _)| n != name);
        self
    }

    /// HTTP Basic with D-11 encoding.
    pub(crate) fn basic(mut self, id: &str, secret: &str) -> Self {
        self.authorization = Some(basic(id, secret));
        self.basic_secret = Some(secret.to_owned());
        self
    }

    /// A raw `Authorization` header.
    pub(crate) fn authorization(mut self, value: &str) -> Self {
        self.authorization = Some(value.to_owned());
        self
    }

    /// No `Authorization` header.
    pub(crate) fn no_auth(mut self) -> Self {
        self.authorization = None;
        self.basic_secret = None;
        self
    }

    /// `client_secret_post` for `id`.
    pub(crate) fn post_secret(self, id: &str, secret: &str) -> Self {
        self.no_auth()
            .set("client_id", id)
            .set("client_secret", secret)
    }

    /// `private_key_jwt` with `assertion`.
    pub(crate) fn client_assertion(self, assertion: &str) -> Self {
        self.no_auth()
            .set("client_assertion_type", CLIENT_ASSERTION_TYPE)
            .set("client_assertion", assertion)
    }

    /// A `DPoP` header.
    pub(crate) fn dpop(mut self, proof: &str) -> Self {
        self.dpop = Some(proof.to_owned());
        self
    }

    /// Another header, sent as given (possibly repeating one).
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.extra_headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The HTTP method.
    pub(crate) fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    /// The request target (path and query).
    pub(crate) fn uri(mut self, uri: &str) -> Self {
        self.uri = uri.to_owned();
        self
    }

    /// The `Content-Type` header (`None` for none).
    pub(crate) fn content_type(mut self, ct: Option<&str>) -> Self {
        self.content_type = ct.map(str::to_owned);
        self
    }

    /// A body sent verbatim instead of the parameters.
    pub(crate) fn raw_body(mut self, body: &str) -> Self {
        self.raw_body = Some(body.to_owned());
        self
    }

    /// A parameter's value.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The form body.
    pub(crate) fn body(&self) -> String {
        match &self.raw_body {
            Some(raw) => raw.clone(),
            None => self
                .params
                .iter()
                .map(|(n, v)| format!("{}={}", encode_component(n), encode_component(v)))
                .collect::<Vec<_>>()
                .join("&"),
        }
    }

    /// The `http::Request`.
    pub(crate) fn build(&self) -> http::Request<Vec<u8>> {
        let mut b = http::Request::builder()
            .method(self.method)
            .uri(self.uri.as_str());
        if let Some(ct) = &self.content_type {
            b = b.header("content-type", ct.as_str());
        }
        if let Some(auth) = &self.authorization {
            b = b.header("authorization", auth.as_str());
        }
        if let Some(dpop) = &self.dpop {
            b = b.header("dpop", dpop.as_str());
        }
        for (n, v) in &self.extra_headers {
            b = b.header(n.as_str(), v.as_str());
        }
        b.body(self.body().into_bytes()).expect("request")
    }

    /// Everything secret this request carries: no response may echo any of it (SEC-10).
    pub(crate) fn sensitive(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .params
            .iter()
            .filter(|(n, _)| {
                matches!(
                    n.as_str(),
                    "assertion"
                        | "subject_token"
                        | "actor_token"
                        | "client_secret"
                        | "client_assertion"
                )
            })
            .map(|(_, v)| v.clone())
            .collect();
        out.extend(self.basic_secret.clone());
        out.extend(self.dpop.clone());
        out.extend(
            self.extra_headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone()),
        );
        out.extend(self.authorization.clone());
        out
    }
}

// ----- responses -----

/// A response, parsed and checked for the invariants every token-endpoint answer has.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) raw: String,
    pub(crate) headers: http::HeaderMap,
}

impl Reply {
    /// Parses `response` and asserts: JSON object body, `Content-Type: application/json`,
    /// `Cache-Control: no-store` (TX-10, TX-15, AS-20); errors carry `error` and
    /// `error_description` strings; a 401 is `invalid_client` with `WWW-Authenticate`
    /// (AS-20, D-11).
    pub(crate) fn check(response: http::Response<Vec<u8>>) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let raw = String::from_utf8(response.into_body()).expect("UTF-8 body");
        let body: Value = serde_json::from_str(&raw).expect("JSON body");
        assert!(body.is_object(), "body is a JSON object: {raw}");
        assert_eq!(
            headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "Cache-Control: no-store on every response ({status} {raw})"
        );
        assert_eq!(
            headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "JSON content type ({status})"
        );
        if status != 200 {
            assert!(body["error"].is_string(), "error code present: {raw}");
            assert!(
                body["error_description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "error_description present: {raw}"
            );
            assert!(body.get("access_token").is_none(), "no token on error");
        }
        if status == 401 {
            assert_eq!(
                body["error"], "invalid_client",
                "401 is invalid_client only"
            );
            let challenge = headers
                .get("www-authenticate")
                .expect("WWW-Authenticate on 401")
                .to_str()
                .unwrap();
            assert!(challenge.starts_with("Basic realm="), "{challenge}");
        }
        if body["error"] == "invalid_client" {
            assert_eq!(status, 401, "invalid_client is always 401 (D-11)");
        }
        Self {
            status,
            body,
            raw,
            headers,
        }
    }

    /// The `error` code.
    pub(crate) fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// The `error_description`.
    pub(crate) fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or("")
    }

    /// A string member of the body.
    pub(crate) fn str(&self, name: &str) -> &str {
        self.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` missing: {}", self.raw))
    }

    /// SEC-10: an error body never contains an assertion, a subject token, a secret or a
    /// client assertion, whole or any segment of it.
    pub(crate) fn assert_no_leak(&self, sensitive: &[String]) {
        if self.status == 200 {
            return;
        }
        for value in sensitive {
            let pieces = std::iter::once(value.as_str())
                .chain(value.split(['.', ' ']))
                .filter(|p| p.len() >= 6);
            for piece in pieces {
                assert!(
                    !self.raw.contains(piece),
                    "error body echoes a secret or token ({piece}): {}",
                    self.raw
                );
            }
        }
    }
}

/// A negative case with its positive control: `build(fx, true)` carries exactly one defect,
/// `build(fx, false)` is the same request without it and must succeed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// The rule ids it proves, space-separated.
    pub(crate) ids: &'static str,
    pub(crate) what: &'static str,
    pub(crate) status: u16,
    pub(crate) error: &'static str,
    pub(crate) build: fn(&Fx, bool) -> Req,
}

/// A [`Row`].
pub(crate) const fn row(
    ids: &'static str,
    what: &'static str,
    status: u16,
    error: &'static str,
    build: fn(&Fx, bool) -> Req,
) -> Row {
    Row {
        ids,
        what,
        status,
        error,
        build,
    }
}

/// Runs every row on a fresh fixture: the defective request must give exactly `status` and
/// `error`; then the control on the same fixture must give 200. Reports all failures at once.
pub(crate) fn run_matrix(name: &str, rows: &[Row]) {
    let mut failures = Vec::new();
    for r in rows {
        let outcome = std::panic::catch_unwind(|| {
            let fx = Fx::new();
            let bad = fx.send(&(r.build)(&fx, true));
            let mut problems = Vec::new();
            if bad.status != r.status || bad.error() != r.error {
                problems.push(format!(
                    "negative gave {} {} ({}), expected {} {}",
                    bad.status,
                    bad.error(),
                    bad.description(),
                    r.status,
                    r.error
                ));
            }
            let good = fx.send(&(r.build)(&fx, false));
            if good.status != 200 {
                problems.push(format!("control gave {} {}", good.status, good.raw));
            }
            problems
        });
        match outcome {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                failures.push(format!("[{}] {}: {}", r.ids, r.what, problems.join("; ")))
            }
            Err(_) => failures.push(format!("[{}] {}: panicked", r.ids, r.what)),
        }
    }
    eprintln!("{name}: {} rows, {} failed", rows.len(), failures.len());
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}
