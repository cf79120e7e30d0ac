//! The code-flow test servers shared by `ema-server`'s and `ema-client`'s code-flow tests: an
//! enterprise IdP and an MCP authorization server built from `ema-server` as the reference
//! servers are, on loopback, on a fixed clock; and a browser that keeps cookies.
//!
//! The IdP has the AS as its OpenID Connect relying party `as-rp` and two users: ana (group
//! `eng`, assigned to the AS by the admission policy) and bob (`sales`, not assigned). The AS
//! registers a public client `ide` and a confidential one `ide-conf` (secret `conf-secret`),
//! both with the client's redirect URI, maps IdP subjects to `local-<sub>`, and keeps a
//! revocation ledger. Included with `#[path]` by each test crate.
#![allow(dead_code, reason = "each test crate uses a part of it")]

use std::sync::{Arc, Mutex};

use ema_grant::code_flow::CodeFlow;
use ema_grant::sign_in::IdpSignIn;
use ema_grant::*;
use ema_id_jag::*;
use ema_jose::{Algorithm, Clock, FixedClock, KeyRing, SigningKey, StaticKeySource, UnixTime};
use ema_jwks::{FetchPolicy, HttpFetcher};
use ema_metadata::AuthorizationServerMetadata;
use ema_server::*;

/// What the AS offers.
pub(crate) struct Options {
    /// Server time.
    pub(crate) now: UnixTime,
    /// The MCP server the AS issues tokens for.
    pub(crate) resource: String,
    /// The client's redirect URI (registered for `ide` and `ide-conf`).
    pub(crate) client_redirect: String,
    /// Whether the AS also offers the ID-JAG profile in its metadata.
    pub(crate) id_jag: bool,
    /// Client ID Metadata Documents, fetched with this fetcher.
    pub(crate) documents: Option<HttpFetcher>,
    /// Whether the metadata says the AS sends `iss` (RFC 9207; `advertise_code_flow` says so).
    pub(crate) iss_advertised: bool,
    /// Whether public clients are enabled (D-24); metadata documents enable them anyway.
    pub(crate) public_clients: bool,
    /// Whether the resource requires DPoP-bound tokens (AS-18).
    pub(crate) require_dpop: bool,
    /// The AS's audit trail (default: off).
    pub(crate) audit: audit::AuditLog,
}

impl Options {
    /// The defaults: public clients on, no ID-JAG profile, no documents.
    pub(crate) fn new(now: UnixTime, resource: &str, client_redirect: &str) -> Self {
        Self {
            now,
            resource: resource.to_owned(),
            client_redirect: client_redirect.to_owned(),
            id_jag: false,
            documents: None,
            iss_advertised: true,
            public_clients: true,
            require_dpop: false,
            audit: audit::AuditLog::disabled(),
        }
    }
}

/// The running servers.
pub(crate) struct Servers {
    /// The IdP's issuer (its base URL).
    pub(crate) idp: String,
    /// The AS's issuer (its base URL).
    pub(crate) auth: String,
    /// The AS's signing keys.
    pub(crate) as_keys: Arc<KeyRing>,
    /// The AS's revocation ledger.
    pub(crate) ledger: Arc<MemoryLedger>,
}

pub(crate) async fn bind() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

pub(crate) fn serve(l: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
}

/// Starts the IdP and the AS.
pub(crate) async fn start(o: Options) -> Servers {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(o.now));
    let (idp_l, idp) = bind().await;
    let (as_l, auth) = bind().await;
    let idp_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("idp-k1".into())).unwrap(),
    ));
    let as_keys = Arc::new(KeyRing::new(
        SigningKey::generate(Algorithm::ES256, Some("as-k1".into())).unwrap(),
    ));
    let as_callback = format!("{auth}/idp/callback");
    let resource = o.resource.as_str();

    let idp_clients = ClientRegistry::new([idp.clone(), format!("{idp}/token")]).with(
        RegisteredClient::new("as-rp", ClientCredential::secret("rp-secret"))
            .with_redirect_uris([as_callback.clone()]),
    );
    let sso = SsoProvider::new(Issuer::new(&idp), idp_keys.clone(), idp_clients.clone())
        .unwrap()
        .with_user(
            User::new("00u8k2Lq91", "ana", "ana-password")
                .unwrap()
                .with_groups(["eng"]),
        )
        .with_user(
            User::new("00u9zzzzzz", "bob", "bob-password")
                .unwrap()
                .with_groups(["sales"]),
        )
        .with_relying_party("as-rp", auth.as_str());
    let policy = GroupPolicy::new()
        .with_member("00u8k2Lq91", ["eng"])
        .with_member("00u9zzzzzz", ["sales"])
        .with_rule(GroupRule::new(
            "eng",
            auth.as_str(),
            ScopeSet::parse("tasks.read").unwrap(),
        ));
    let exchange = TokenExchangeGrant::builder(
        IdJagIssuer::new(Issuer::new(&idp), idp_keys.clone()),
        StaticKeySource::new().with_issuer(&idp, idp_keys.jwks()),
        policy,
    )
    .client_registry(idp_clients)
    .token_endpoint(format!("{idp}/token"))
    .target(TargetServer::new(auth.as_str(), [resource]))
    .build()
    .unwrap();
    let idp_router = IdpRouter::builder(exchange, idp_keys.clone())
        .sso(sso)
        .metadata(idp_metadata(&idp))
        .clock(clock.clone())
        .build()
        .unwrap();
    serve(idp_l, idp_router);

    let ledger = Arc::new(MemoryLedger::new());
    let grant = JwtBearerGrant::builder(
        AccessTokenIssuer::new(Issuer::new(&auth), as_keys.clone()),
        StaticKeySource::new().with_issuer(&idp, idp_keys.jwks()),
        Directory::new().with_provisioning(|c| Some(LocalSubject::new(format!("local-{}", c.sub)))),
    )
    .trust(TrustedIssuer::new(idp.as_str()))
    .resource(
        ResourceConfig::new(resource, ["tasks.read", "tasks.write"])
            .with_default_scopes(ScopeSet::parse("tasks.read").unwrap())
            .with_require_dpop(o.require_dpop),
    )
    .client(
        RegisteredClient::new("ide", ClientCredential::Public)
            .with_redirect_uris([o.client_redirect.clone()]),
    )
    .client(
        RegisteredClient::new("ide-conf", ClientCredential::secret("conf-secret"))
            .with_redirect_uris([o.client_redirect.clone()]),
    )
    .revocation_ledger(ledger.clone())
    .token_endpoint(format!("{auth}/token"))
    .build()
    .unwrap();
    let flow = CodeFlow::for_grant(&grant).with_public_clients(o.public_clients);
    let sign_in = IdpSignIn::new(
        idp.as_str(),
        format!("{idp}/authorize"),
        "as-rp",
        as_callback,
    );
    let fetcher = HttpFetcher::new(FetchPolicy::insecure_loopback_development()).unwrap();
    let mut code =
        CodeFlowConfig::new(flow, sign_in, &format!("{idp}/token"), "rp-secret", fetcher).unwrap();
    let cimd = o.documents.is_some();
    if let Some(documents) = o.documents {
        code = code.with_client_metadata_documents(documents);
    }
    let mut meta = AuthorizationServerMetadata::new(auth.as_str(), format!("{auth}/token"));
    if o.id_jag {
        meta = meta.with_id_jag_profile();
    }
    advertise_code_flow(&mut meta);
    if cimd {
        meta.client_id_metadata_document_supported = Some(true);
    }
    // advertise_code_flow says the AS sends `iss` (RFC 9207); the rows of an AS that does not
    // say so take the member out again.
    if !o.iss_advertised {
        meta.extra
            .remove("authorization_response_iss_parameter_supported");
    }
    let as_router = AuthorizationServerRouter::builder(grant, &meta)
        .clock(clock)
        .audit(o.audit)
        .code_flow(code)
        .build();
    serve(as_l, as_router);
    Servers {
        idp,
        auth,
        as_keys,
        ledger,
    }
}

/// A browser: follows no redirects by itself, keeps the cookies servers set (name and value
/// only; sent back on every request, which is all these loopback servers need).
#[derive(Clone, Default)]
pub(crate) struct Browser {
    cookies: Arc<Mutex<Vec<(String, String)>>>,
}

impl Browser {
    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap()
    }

    fn keep(&self, r: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for v in r.headers().get_all("set-cookie") {
            let Some((name, value)) = v
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .and_then(|p| p.split_once('='))
            else {
                continue;
            };
            jar.retain(|(n, _)| n != name);
            jar.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }

    fn cookie_header(&self) -> Option<String> {
        let jar = self.cookies.lock().unwrap();
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// `GET url`.
    pub(crate) async fn get(&self, url: &str) -> reqwest::Result<reqwest::Response> {
        let mut req = Self::http().get(url);
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        let r = req.send().await?;
        self.keep(&r);
        Ok(r)
    }

    /// `POST url` with a form body.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        body: String,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = Self::http()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        let r = req.send().await?;
        self.keep(&r);
        Ok(r)
    }
}

/// The `Location` of a redirect.
pub(crate) fn location(r: &reqwest::Response) -> Result<String, String> {
    r.headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("HTTP {} without a location", r.status()))
}

/// Signs `user` in at the IdP the AS sent the browser to (`to_idp`, the AS's redirect): posts
/// the login form, returns the IdP's redirect back to the AS callback.
pub(crate) async fn idp_login(b: &Browser, to_idp: &str, user: &str) -> Result<String, String> {
    let (idp_authorize, query) = to_idp.split_once('?').ok_or("no query")?;
    let r = b
        .post_form(
            idp_authorize,
            format!("{query}&username={user}&password={user}-password"),
        )
        .await
        .map_err(|e| e.to_string())?;
    location(&r)
}
