//! A catalog of bad requests for the three reference servers, and the rule each is judged by.
//!
//! Well-formed HTTP requests with bad content (malformed forms, wrong content types, garbage
//! and truncated tokens, oversized bodies, huge headers...) must get a 4xx: never a 5xx, never a
//! dropped connection. Bytes that are not HTTP may get a 4xx or a close. A client that stalls
//! must be answered (408) or cut off by the server's timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ema_grant::form::encode_component;
use ema_grant::{ID_JAG_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_BEARER, TOKEN_EXCHANGE};

use axum::body::Bytes;
use ema_jose::{SignError, UnixTime};

use super::client::{ClientError, Connection};
use super::raw::{Outcome, Step};
use super::stack::{MCP_PATH, MCP_PROTOCOL_VERSION, Stack, basic_auth, idp_basic_auth, token_body};

/// Which server a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The IdP.
    Idp,
    /// The authorization server.
    AuthServer,
    /// The MCP server (bearer layer on).
    Mcp,
}

impl Target {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idp => "idp",
            Self::AuthServer => "as",
            Self::Mcp => "mcp",
        }
    }
}

/// How a bad request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Well-formed HTTP: a 4xx, nothing else.
    Reject,
    /// Not valid HTTP: a 4xx or a close; never a 5xx, never silence.
    Malformed,
    /// The client stalls mid-request: a 4xx (408) or a close once the server's timeout runs
    /// out; never a 5xx, never held open past [`STALL_LIMIT`].
    Stalled,
    /// The client aborts mid-request: nothing to read, the server just has to stay up.
    Aborted,
    /// A well-formed request a server may accept: any answer but a 5xx; never dropped.
    Answered,
}

/// How long a stalled client waits for the server to give up on it: the servers' request
/// timeout (10 s) plus a margin.
pub const STALL_LIMIT: Duration = Duration::from_secs(16);
/// How long any other bad request may take to be answered.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(12);

/// One bad request.
#[derive(Debug, Clone)]
pub struct BadRequest {
    /// A stable name (`as/garbage-assertion`...).
    pub name: String,
    /// Where it goes.
    pub target: Target,
    /// The rule it is judged by.
    pub expect: Expect,
    /// The bytes, in steps.
    pub steps: Vec<Step>,
}

impl BadRequest {
    /// Whether the request stalls on purpose (it occupies its connection for seconds).
    pub fn is_slow(&self) -> bool {
        self.expect == Expect::Stalled
    }

    /// The most time to wait for an answer.
    pub fn limit(&self) -> Duration {
        if self.is_slow() {
            STALL_LIMIT
        } else {
            ANSWER_LIMIT
        }
    }

    /// `None` when `outcome` is acceptable, else why not.
    pub fn judge(&self, outcome: Outcome) -> Option<&'static str> {
        use Outcome as O;
        match (self.expect, outcome) {
            (_, O::Status(s)) if (400..500).contains(&s) => None,
            (_, O::Status(s)) if s >= 500 => Some("5xx"),
            (Expect::Answered, O::Status(_)) => None,
            (_, O::Status(_)) => Some("not a 4xx"),
            (Expect::Aborted, O::Aborted) => None,
            (Expect::Malformed | Expect::Stalled, O::Closed) => None,
            (Expect::Malformed, O::Reset) => None,
            (Expect::Reject | Expect::Answered, O::Closed | O::Reset) => Some("connection dropped"),
            (_, O::TimedOut) => Some("no answer"),
            (_, O::Reset | O::Closed | O::Aborted) => Some("connection dropped"),
        }
    }
}

/// What the catalog needs from the running servers. `Debug` shows the addresses only, never
/// the tokens.
#[derive(Clone)]
pub struct Material {
    /// The IdP's address.
    pub idp: SocketAddr,
    /// The authorization server's address.
    pub auth_server: SocketAddr,
    /// The MCP server's address.
    pub mcp: SocketAddr,
    /// A valid access token for the MCP server (bad requests that get past the bearer layer).
    pub access_token: String,
    /// An expired access token.
    pub expired_token: String,
    /// An access token for another resource.
    pub other_audience_token: String,
    /// A correctly signed ID-JAG that was already redeemed.
    pub spent_id_jag: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("idp", &self.idp)
            .field("auth_server", &self.auth_server)
            .field("mcp", &self.mcp)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// The address of `target`.
    pub fn addr(&self, target: Target) -> SocketAddr {
        match target {
            Target::Idp => self.idp,
            Target::AuthServer => self.auth_server,
            Target::Mcp => self.mcp,
        }
    }
}

/// Builds the [`Material`] from a running [`Stack`]: fresh tokens, and an ID-JAG redeemed once
/// at the authorization server so that it is spent.
pub async fn material(stack: &Stack) -> Result<Material, MaterialError> {
    let now = stack.now();
    let spent = stack.id_jag(now)?;
    let mut conn = Connection::new(stack.auth_server.addr);
    let basic = basic_auth();
    let reply = conn
        .send(
            "POST",
            "/token",
            &[FORM, ("authorization", &basic)],
            Bytes::from(token_body(&spent)),
        )
        .await?;
    if reply.status != 200 {
        return Err(MaterialError::Refused(reply.status));
    }
    Ok(Material {
        idp: stack.idp.addr,
        auth_server: stack.auth_server.addr,
        mcp: stack.mcp.addr,
        access_token: stack.access_token(now)?,
        expired_token: stack.access_token_for(
            UnixTime::from_secs(now.as_secs().saturating_sub(7200)),
            &stack.resource,
        )?,
        other_audience_token: stack.access_token_for(now, &format!("{}/notes", stack.mcp.url))?,
        spent_id_jag: spent,
    })
}

/// Why [`material`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// Signing a token.
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// Talking to the authorization server.
    #[error("{0}")]
    Http(#[from] ClientError),
    /// The authorization server refused the ID-JAG.
    #[error("the authorization server refused a fresh ID-JAG: HTTP {0}")]
    Refused(u16),
}

/// Deterministic junk bytes (xorshift), so runs are reproducible.
fn junk(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes().first().copied().unwrap_or(0)
        })
        .collect()
}

fn b64(len: usize, seed: u64) -> String {
    URL_SAFE_NO_PAD.encode(junk(len, seed))
}

/// A JWT-looking string: three base64url segments, the first a plausible header.
fn jwt_looking(alg: &str, typ: &str, seed: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"{typ}","kid":"k1"}}"#));
    format!("{header}.{}.{}", b64(180, seed), b64(64, seed + 1))
}

/// `token` with its payload kept and its signature replaced by `sig` (empty for `alg: none`).
fn resigned(token: &str, header_json: Option<&str>, sig: &str) -> String {
    let mut parts = token.splitn(3, '.');
    let header = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    let header = header_json.map_or_else(|| header.to_owned(), |h| URL_SAFE_NO_PAD.encode(h));
    format!("{header}.{payload}.{sig}")
}

fn truncated(token: &str) -> String {
    token.chars().take(token.len() * 2 / 3).collect()
}

/// A request with `Host` and, when there is a body, `Content-Length`.
fn request(
    method: &str,
    target: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

struct Builder<'m> {
    m: &'m Material,
    out: Vec<BadRequest>,
}

impl Builder<'_> {
    fn add(&mut self, target: Target, name: &str, expect: Expect, steps: Vec<Step>) {
        self.out.push(BadRequest {
            name: format!("{}/{name}", target.name()),
            target,
            expect,
            steps,
        });
    }

    fn reject(
        &mut self,
        target: Target,
        name: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let bytes = request(method, path, self.m.addr(target), headers, body);
        self.add(target, name, Expect::Reject, vec![Step::send(bytes)]);
    }

    /// Bad HTTP and hostile framing, the same at every server.
    fn http_level(&mut self, t: Target, post_path: &str, get_path: &str) {
        let addr = self.m.addr(t);
        self.reject(t, "unknown-path", "GET", "/no/such/path", &[], b"");
        self.reject(t, "wrong-method", "PUT", post_path, &[FORM], b"a=b");
        let big = "a".repeat(512 * 1024);
        self.reject(t, "huge-header", "GET", get_path, &[("x-big", &big)], b"");
        let many: Vec<(String, String)> = (0..300)
            .map(|i| (format!("x-h{i}"), "v".to_owned()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.reject(t, "many-headers", "GET", get_path, &many, b"");
        let long_path = format!("/{}", "p".repeat(200 * 1024));
        self.reject(t, "huge-uri", "GET", &long_path, &[], b"");
        let huge_body = vec![b'a'; 256 * 1024];
        self.reject(t, "oversized-body", "POST", post_path, &[FORM], &huge_body);
        let mut chunked = format!(
            "POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..64 {
            chunked.extend_from_slice(b"1000\r\n");
            chunked.extend_from_slice(&[b'a'; 0x1000]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        self.add(
            t,
            "oversized-chunked-body",
            Expect::Reject,
            vec![Step::send(chunked)],
        );
        let lying = format!(
            "POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 999999999\r\n\r\nabc"
        );
        self.add(
            t,
            "content-length-lie",
            Expect::Reject,
            vec![Step::send(lying.into_bytes())],
        );
        let mut garbage = junk(2048, 7);
        garbage.extend_from_slice(b"\r\n\r\n");
        self.add(
            t,
            "garbage-bytes",
            Expect::Malformed,
            vec![Step::send(garbage)],
        );
        self.add(
            t,
            "bad-request-line",
            Expect::Malformed,
            vec![Step::send(b"HELLO THERE\r\n\r\n".to_vec())],
        );
        self.add(
            t,
            "bad-content-length",
            Expect::Malformed,
            vec![Step::send(
                format!("POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: ten\r\n\r\n")
                    .into_bytes(),
            )],
        );
        self.add(
            t,
            "length-and-chunked",
            Expect::Malformed,
            vec![Step::send(
                format!(
                    "POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                )
                .into_bytes(),
            )],
        );
        self.add(
            t,
            "bad-chunk-size",
            Expect::Malformed,
            vec![Step::send(
                format!(
                    "POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                )
                .into_bytes(),
            )],
        );
        self.add(
            t,
            "header-without-colon",
            Expect::Malformed,
            vec![Step::send(
                format!("GET {get_path} HTTP/1.1\r\nhost: {addr}\r\nno colon here\r\n\r\n")
                    .into_bytes(),
            )],
        );
        // Slowloris: a head that never ends, a body that never comes, a silent connection.
        self.add(
            t,
            "slow-headers",
            Expect::Stalled,
            vec![
                Step::send(
                    format!("POST {post_path} HTTP/1.1\r\nhost: {addr}\r\nx-a: ").into_bytes(),
                ),
                Step::Pause(Duration::from_secs(2)),
                Step::send(b"b".to_vec()),
                Step::Pause(STALL_LIMIT),
            ],
        );
        self.add(
            t,
            "slow-body",
            Expect::Stalled,
            vec![
                Step::send(
                    format!(
                        "POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\ngrant_type="
                    )
                    .into_bytes(),
                ),
                Step::Pause(STALL_LIMIT),
            ],
        );
        self.add(
            t,
            "silent-connection",
            Expect::Stalled,
            vec![Step::Pause(STALL_LIMIT)],
        );
        self.add(
            t,
            "abort-mid-body",
            Expect::Aborted,
            vec![
                Step::send(
                    format!(
                        "POST {post_path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\ngrant_type="
                    )
                    .into_bytes(),
                ),
                Step::Abort,
            ],
        );
        self.add(
            t,
            "abort-mid-headers",
            Expect::Aborted,
            vec![
                Step::send(format!("POST {post_path} HTTP/1.1\r\nhost: ").into_bytes()),
                Step::Abort,
            ],
        );
    }

    /// The authorization server's token endpoint.
    fn auth_server(&mut self) {
        let t = Target::AuthServer;
        let basic = basic_auth();
        let auth = ("authorization", basic.as_str());
        let post = |b: &mut Self, name: &str, headers: &[(&str, &str)], body: &[u8]| {
            b.reject(t, name, "POST", "/token", headers, body);
        };
        post(
            self,
            "malformed-form",
            &[FORM, auth],
            b"%zz=%%&&=&grant_type=%",
        );
        post(
            self,
            "non-utf8-form",
            &[FORM, auth],
            b"grant_type=\xff\xfe&assertion=\xc3",
        );
        let json = format!(r#"{{"grant_type":"{JWT_BEARER}","assertion":"x"}}"#);
        post(self, "json-body", &[JSON, auth], json.as_bytes());
        post(self, "no-content-type", &[auth], token_body("x").as_bytes());
        post(
            self,
            "multipart-body",
            &[("content-type", "multipart/form-data; boundary=x"), auth],
            b"--x\r\ncontent-disposition: form-data; name=\"grant_type\"\r\n\r\nx\r\n--x--\r\n",
        );
        post(self, "empty-body", &[FORM, auth], b"");
        post(
            self,
            "garbage-assertion",
            &[FORM, auth],
            token_body(&b64(300, 11)).as_bytes(),
        );
        let jwtish = jwt_looking("ES256", "oauth-id-jag+jwt", 13);
        post(
            self,
            "jwt-looking-assertion",
            &[FORM, auth],
            token_body(&jwtish).as_bytes(),
        );
        let spent = self.m.spent_id_jag.clone();
        post(
            self,
            "truncated-id-jag",
            &[FORM, auth],
            token_body(&truncated(&spent)).as_bytes(),
        );
        let none = resigned(
            &spent,
            Some(r#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#),
            "",
        );
        post(
            self,
            "alg-none-id-jag",
            &[FORM, auth],
            token_body(&none).as_bytes(),
        );
        let forged = resigned(&spent, None, &b64(64, 17));
        post(
            self,
            "bad-signature-id-jag",
            &[FORM, auth],
            token_body(&forged).as_bytes(),
        );
        post(
            self,
            "replayed-id-jag",
            &[FORM, auth],
            token_body(&spent).as_bytes(),
        );
        let huge_jag = jwt_looking("ES256", "oauth-id-jag+jwt", 19).repeat(120);
        post(
            self,
            "huge-assertion",
            &[FORM, auth],
            token_body(&huge_jag).as_bytes(),
        );
        post(
            self,
            "no-client-auth",
            &[FORM],
            token_body(&spent).as_bytes(),
        );
        post(
            self,
            "wrong-secret",
            &[FORM, ("authorization", "Basic dGNfNWYyYTkxOndyb25n")],
            token_body(&spent).as_bytes(),
        );
        post(
            self,
            "garbage-basic-auth",
            &[FORM, ("authorization", "Basic !!!not-base64!!!")],
            token_body(&spent).as_bytes(),
        );
        post(
            self,
            "bearer-instead-of-basic",
            &[FORM, ("authorization", "Bearer abc")],
            token_body(&spent).as_bytes(),
        );
        post(
            self,
            "two-authorization-headers",
            &[FORM, auth, auth],
            token_body(&spent).as_bytes(),
        );
        post(
            self,
            "unsupported-grant-type",
            &[FORM, auth],
            b"grant_type=password&username=a&password=b",
        );
        let repeated = format!("{}&grant_type=x", token_body(&spent));
        post(
            self,
            "repeated-parameter",
            &[FORM, auth],
            repeated.as_bytes(),
        );
        let many = "a=b&".repeat(5000);
        post(self, "many-parameters", &[FORM, auth], many.as_bytes());
        post(
            self,
            "garbage-dpop",
            &[FORM, auth, ("dpop", "not.a.proof")],
            token_body(&spent).as_bytes(),
        );
        self.reject(t, "get-token", "GET", "/token", &[], b"");
    }

    /// The IdP: SSO and token exchange.
    fn idp(&mut self) {
        let t = Target::Idp;
        let basic = idp_basic_auth();
        let auth = ("authorization", basic.as_str());
        let exchange = |subject: &str| {
            format!(
                "grant_type={}&requested_token_type={}&audience=x&subject_token={}&subject_token_type={}",
                encode_component(TOKEN_EXCHANGE),
                encode_component(ID_JAG_TOKEN_TYPE),
                encode_component(subject),
                encode_component(ID_TOKEN_TYPE),
            )
        };
        let post = |b: &mut Self, name: &str, headers: &[(&str, &str)], body: &[u8]| {
            b.reject(t, name, "POST", "/token", headers, body);
        };
        post(
            self,
            "garbage-subject-token",
            &[FORM, auth],
            exchange(&b64(300, 23)).as_bytes(),
        );
        let jwtish = jwt_looking("ES256", "JWT", 29);
        post(
            self,
            "jwt-looking-subject-token",
            &[FORM, auth],
            exchange(&jwtish).as_bytes(),
        );
        let truncated_jag = truncated(&self.m.spent_id_jag);
        post(
            self,
            "truncated-subject-token",
            &[FORM, auth],
            exchange(&truncated_jag).as_bytes(),
        );
        post(
            self,
            "exchange-json-body",
            &[JSON, auth],
            br#"{"grant_type":"x"}"#,
        );
        post(
            self,
            "exchange-no-client-auth",
            &[FORM],
            exchange("x").as_bytes(),
        );
        post(self, "malformed-form", &[FORM, auth], b"%%%=&&&%zz");
        post(
            self,
            "garbage-code",
            &[FORM, auth],
            b"grant_type=authorization_code&code=nope&code_verifier=x&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback",
        );
        self.reject(
            t,
            "authorize-garbage-query",
            "GET",
            "/authorize?%zz=%%&&=",
            &[],
            b"",
        );
        self.reject(t, "authorize-unknown-client", "GET", "/authorize?response_type=code&client_id=nobody&redirect_uri=http%3A%2F%2Fevil.example%2F", &[], b"");
        self.reject(t, "authorize-no-params", "GET", "/authorize", &[], b"");
        self.reject(
            t,
            "login-garbage-form",
            "POST",
            "/authorize",
            &[FORM],
            b"%%%zz&&==",
        );
        self.reject(
            t,
            "login-wrong-content-type",
            "POST",
            "/authorize",
            &[JSON],
            br#"{"username":"ana"}"#,
        );
        let login = format!(
            "response_type=code&client_id=desk-idp-01&redirect_uri={}&scope=openid&state=s&nonce=n&code_challenge={}&code_challenge_method=S256&username=ana&password=wrong",
            encode_component("http://127.0.0.1/callback"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        );
        self.reject(
            t,
            "login-wrong-password",
            "POST",
            "/authorize",
            &[FORM],
            login.as_bytes(),
        );
    }

    /// The MCP server: the bearer layer first, then rmcp behind it.
    fn mcp(&mut self) {
        let t = Target::Mcp;
        let good = format!("Bearer {}", self.m.access_token);
        let good = ("authorization", good.as_str());
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{MCP_PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"x","version":"1"}}}}}}"#
        );
        let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}"#;
        let with_token = |b: &mut Self, name: &str, token: &str| {
            let value = format!("Bearer {token}");
            b.reject(
                t,
                name,
                "POST",
                MCP_PATH,
                &[JSON, ACCEPT, ("authorization", &value)],
                init.as_bytes(),
            );
        };
        self.reject(
            t,
            "no-token",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT],
            init.as_bytes(),
        );
        with_token(self, "garbage-token", &b64(200, 31));
        with_token(
            self,
            "jwt-looking-token",
            &jwt_looking("ES256", "at+jwt", 37),
        );
        let access = self.m.access_token.clone();
        with_token(self, "truncated-token", &truncated(&access));
        with_token(
            self,
            "alg-none-token",
            &resigned(&access, Some(r#"{"alg":"none","typ":"at+jwt"}"#), ""),
        );
        with_token(
            self,
            "bad-signature-token",
            &resigned(&access, None, &b64(64, 41)),
        );
        with_token(self, "expired-token", &self.m.expired_token.clone());
        with_token(
            self,
            "other-audience-token",
            &self.m.other_audience_token.clone(),
        );
        with_token(self, "empty-token", "");
        with_token(self, "huge-token", &b64(48 * 1024, 43));
        let mut non_ascii = b"Bearer ".to_vec();
        non_ascii.extend_from_slice(&[0xff, 0xfe, 0x80, b'a']);
        let mut raw = format!("POST {MCP_PATH} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nauthorization: ", self.m.mcp).into_bytes();
        raw.extend_from_slice(&non_ascii);
        raw.extend_from_slice(
            format!("\r\ncontent-length: {}\r\n\r\n{init}", init.len()).as_bytes(),
        );
        self.add(
            t,
            "non-ascii-authorization",
            Expect::Reject,
            vec![Step::send(raw)],
        );
        self.reject(
            t,
            "basic-scheme",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, ("authorization", "Basic dTpw")],
            init.as_bytes(),
        );
        self.reject(
            t,
            "two-authorization-headers",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good, good],
            init.as_bytes(),
        );
        let query = format!("{MCP_PATH}?access_token={access}");
        self.reject(
            t,
            "token-in-query",
            "POST",
            &query,
            &[JSON, ACCEPT],
            init.as_bytes(),
        );
        // Past the bearer layer, with a valid token: rmcp's own checks.
        self.reject(
            t,
            "malformed-json",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good],
            b"{\"jsonrpc\":\"2.0\",",
        );
        self.reject(
            t,
            "not-json-rpc",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good],
            b"[1,2,3]",
        );
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        self.reject(
            t,
            "deeply-nested-json",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good],
            deep.as_bytes(),
        );
        self.reject(
            t,
            "wrong-content-type",
            "POST",
            MCP_PATH,
            &[("content-type", "text/plain"), ACCEPT, good],
            init.as_bytes(),
        );
        self.reject(
            t,
            "no-accept",
            "POST",
            MCP_PATH,
            &[JSON, good],
            init.as_bytes(),
        );
        self.reject(
            t,
            "unknown-session",
            "POST",
            MCP_PATH,
            &[
                JSON,
                ACCEPT,
                good,
                ("mcp-session-id", "no-such-session"),
                ("mcp-protocol-version", MCP_PROTOCOL_VERSION),
            ],
            call.as_bytes(),
        );
        self.reject(
            t,
            "call-without-session",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good],
            call.as_bytes(),
        );
        self.reject(
            t,
            "response-without-session",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good],
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        );
        self.reject(
            t,
            "get-without-session",
            "GET",
            MCP_PATH,
            &[("accept", "text/event-stream"), good],
            b"",
        );
        // rmcp 3.11 answers 202 to a DELETE of an unknown session (deleting is idempotent),
        // where the MCP transport would have 404 for an unknown session: harmless, so judged
        // only for not failing.
        let delete = request(
            "DELETE",
            MCP_PATH,
            self.m.mcp,
            &[good, ("mcp-session-id", "no-such-session")],
            b"",
        );
        self.add(
            t,
            "delete-unknown-session",
            Expect::Answered,
            vec![Step::send(delete)],
        );
        self.reject(
            t,
            "bad-protocol-version",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good, ("mcp-protocol-version", "1999-01-01")],
            init.as_bytes(),
        );
        let huge = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"add_task","arguments":{{"title":"{}"}}}}}}"#,
            "t".repeat(128 * 1024)
        );
        self.reject(
            t,
            "oversized-json",
            "POST",
            MCP_PATH,
            &[JSON, ACCEPT, good],
            huge.as_bytes(),
        );
    }
}

/// Every bad request for the three servers of `m`.
pub fn catalog(m: &Material) -> Vec<BadRequest> {
    let mut b = Builder { m, out: Vec::new() };
    b.http_level(
        Target::AuthServer,
        "/token",
        "/.well-known/oauth-authorization-server",
    );
    b.auth_server();
    b.http_level(Target::Idp, "/token", "/.well-known/openid-configuration");
    b.idp();
    b.http_level(
        Target::Mcp,
        MCP_PATH,
        "/.well-known/oauth-protected-resource/mcp",
    );
    b.mcp();
    b.out
}
