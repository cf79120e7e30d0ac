//! Policy-checked HTTP: which URLs and addresses may be reached, how much may come back, how long
//! it may take, and no redirects (MD-8, SEC-10).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ema_metadata::{UrlError, UrlPolicy};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use url::{Host, Url};

use crate::secret::Secret;

/// The default cap on a response body: 256 KiB (the largest metadata or JWKS document read).
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;
/// The default connect timeout: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default total timeout for one request, body included: 10 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("ema-rs/", env!("CARGO_PKG_VERSION"));

/// What the fetch layer may reach and accept.
///
/// The default is strict: `https` only (MD-8), public addresses only, 256 KiB bodies, 5 s to
/// connect and 10 s in all, no redirects.
///
/// ```
/// use std::time::Duration;
/// use ema_jwks::FetchPolicy;
///
/// let strict = FetchPolicy::new().with_max_body(64 * 1024).with_timeout(Duration::from_secs(3));
/// assert!(!strict.url_policy().allows_loopback_http());
/// let dev = FetchPolicy::insecure_loopback_development();
/// assert!(dev.url_policy().allows_loopback_http());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    urls: UrlPolicy,
    addresses: AddressPolicy,
    max_body: usize,
    connect_timeout: Duration,
    timeout: Duration,
}

impl FetchPolicy {
    /// The strict default.
    pub const fn new() -> Self {
        Self {
            urls: UrlPolicy::https_only(),
            addresses: AddressPolicy {
                allow_loopback: false,
                allow_private: false,
            },
            max_body: DEFAULT_MAX_BODY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// For local development and tests only: also `http` to loopback hosts
    /// ([`UrlPolicy::insecure_allow_loopback_http`]) and loopback addresses. Private and
    /// link-local addresses stay refused.
    pub const fn insecure_loopback_development() -> Self {
        let mut policy = Self::new();
        policy.urls = UrlPolicy::insecure_allow_loopback_http();
        policy.addresses.allow_loopback = true;
        policy
    }

    /// Replaces the URL rule.
    #[must_use]
    pub const fn with_url_policy(mut self, urls: UrlPolicy) -> Self {
        self.urls = urls;
        self
    }

    /// Allows (or refuses) loopback addresses, whatever the scheme.
    #[must_use]
    pub const fn insecure_allow_loopback_addresses(mut self, allow: bool) -> Self {
        self.addresses.allow_loopback = allow;
        self
    }

    /// Allows (or refuses) private, link-local, shared, documentation and other non-public
    /// addresses. Only for deployments whose IdP or authorization server lives on a private
    /// network on purpose.
    #[must_use]
    pub const fn insecure_allow_private_addresses(mut self, allow: bool) -> Self {
        self.addresses.allow_private = allow;
        self
    }

    /// Sets the response body cap in bytes.
    #[must_use]
    pub const fn with_max_body(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub const fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the total timeout of one request, from sending to the last body byte.
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL rule.
    pub const fn url_policy(&self) -> &UrlPolicy {
        &self.urls
    }

    /// The response body cap.
    pub const fn max_body(&self) -> usize {
        self.max_body
    }

    /// The total timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the policy lets the client connect to `ip`.
    pub fn permits_address(&self, ip: IpAddr) -> bool {
        self.addresses.permits(ip)
    }
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AddressPolicy {
    allow_loopback: bool,
    allow_private: bool,
}

impl AddressPolicy {
    fn permits(self, ip: IpAddr) -> bool {
        match classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::NonPublic => self.allow_private,
        }
    }
}

/// Where an address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressClass {
    Public,
    Loopback,
    /// Private, link-local, shared, reserved, documentation, multicast, unspecified.
    NonPublic,
}

fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if a == 127 {
        return AddressClass::Loopback;
    }
    let non_public = a == 0                                   // "this network"
        || a == 10                                            // RFC 1918
        || (a == 100 && (64..128).contains(&b))               // shared address space (CGNAT)
        || (a == 169 && b == 254)                             // link-local (cloud metadata)
        || (a == 172 && (16..32).contains(&b))                // RFC 1918
        || (a == 192 && b == 0 && c == 0)                     // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                     // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                   // 6to4 relay anycast
        || (a == 192 && b == 168)                             // RFC 1918
        || (a == 198 && (b == 18 || b == 19))                 // benchmarking
        || (a == 198 && b == 51 && c == 100)                  // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                   // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    if non_public {
        AddressClass::NonPublic
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    let [s0, s1, ..] = seg;
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address: judge that one.
    if s0 == 0x64 && s1 == 0xff9b && seg.get(2..6) == Some(&[0, 0, 0, 0]) {
        let [.., hi, lo] = seg;
        return classify_v4(embedded_v4(hi, lo));
    }
    if s0 == 0x2002 {
        let [_, hi, lo, ..] = seg;
        return classify_v4(embedded_v4(hi, lo));
    }
    let non_public = ip.is_unspecified()
        || (s0 & 0xfe00) == 0xfc00            // unique local fc00::/7
        || (s0 & 0xffc0) == 0xfe80            // link-local fe80::/10
        || (s0 & 0xffc0) == 0xfec0            // site-local fec0::/10 (deprecated)
        || (s0 & 0xff00) == 0xff00            // multicast
        || (s0 == 0x2001 && s1 == 0x0db8)     // documentation
        || (s0 == 0x2001 && s1 < 0x0200)      // IETF protocol assignments incl. Teredo
        || s0 == 0x0100                       // discard-only 100::/64
        || (s0 & 0xe000) != 0x2000; // outside global unicast 2000::/3
    if non_public {
        AddressClass::NonPublic
    } else {
        AddressClass::Public
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Why a request failed before an HTTP status could be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL breaks the URL rule (`https` only unless loopback is allowed, MD-8).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The host is, or resolves only to, addresses the policy refuses (private, link-local,
    /// loopback without the opt-in, ...).
    #[error("`{host}` resolves only to addresses the fetch policy refuses")]
    ForbiddenAddress {
        /// The host name or literal address.
        host: String,
    },
    /// No complete response within the total timeout.
    #[error("no complete response within {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The body is larger than the cap; reading stopped at the cap.
    #[error("response body exceeds the cap of {max} bytes")]
    TooLarge {
        /// The cap.
        max: usize,
    },
    /// The server answered with a redirect, which is never followed.
    #[error("server answered with redirect status {status}, which is not followed")]
    Redirect {
        /// The 3xx status.
        status: u16,
    },
    /// The connection could not be made.
    #[error("cannot connect: {reason}")]
    Connect {
        /// What went wrong.
        reason: String,
    },
    /// Any other transport failure.
    #[error("transport failure: {reason}")]
    Transport {
        /// What went wrong.
        reason: String,
    },
}

/// A response read in full, within the policy.
///
/// `Debug` shows the status, the headers and the body's length, never the body: a token
/// endpoint's body carries the token (SEC-10).
#[derive(Clone)]
#[non_exhaustive]
pub struct FetchResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most the policy's cap.
    pub body: Vec<u8>,
}

impl fmt::Debug for FetchResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Len(usize);
        impl fmt::Debug for Len {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<redacted, {} bytes>", self.0)
            }
        }
        f.debug_struct("FetchResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &Len(self.body.len()))
            .finish()
    }
}

impl FetchResponse {
    /// One header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `WWW-Authenticate` value, joined with `, ` as RFC 9110 §5.3 allows.
    pub fn www_authenticate(&self) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

/// The address filter plugged into reqwest's resolver: names resolving only to refused
/// addresses fail before any connection is made.
#[derive(Debug, Clone, Copy)]
struct PolicyResolver {
    addresses: AddressPolicy,
}

/// The resolver's refusal, found again in the reqwest error chain.
#[derive(Debug)]
struct RefusedAddress {
    host: String,
}

impl fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` resolves only to refused addresses", self.host)
    }
}

impl StdError for RefusedAddress {}

type BoxError = Box<dyn StdError + Send + Sync>;

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let addresses = self.addresses;
        let fut: Pin<Box<dyn Future<Output = Result<reqwest::dns::Addrs, BoxError>> + Send>> =
            Box::pin(async move {
                let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
                let allowed: Vec<SocketAddr> =
                    resolved.filter(|a| addresses.permits(a.ip())).collect();
                if allowed.is_empty() {
                    return Err(Box::new(RefusedAddress { host }) as BoxError);
                }
                Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
            });
        fut
    }
}

/// The HTTP client every network call of ema-rs goes through (key sets here; metadata, token
/// requests and the MCP probe in `ema-client`): URL rule, address filter (literal addresses
/// checked before the request, names filtered at resolution), no proxy, no redirects, connect
/// and total timeouts, and a streamed body cap.
///
/// ```no_run
/// # async fn demo() -> Result<(), ema_jwks::FetchError> {
/// use ema_jwks::{FetchPolicy, HttpFetcher};
///
/// let fetcher = HttpFetcher::new(FetchPolicy::new())?;
/// let url = fetcher.check_url("jwks_uri", "https://idp.example/keys")?;
/// let response = fetcher.get(&url).await?;
/// assert!(response.body.len() <= FetchPolicy::new().max_body());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    policy: Arc<FetchPolicy>,
}

impl HttpFetcher {
    /// Builds the client for `policy`.
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .dns_resolver(PolicyResolver {
                addresses: policy.addresses,
            })
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| FetchError::Transport {
                reason: e.without_url().to_string(),
            })?;
        Ok(Self {
            client,
            policy: Arc::new(policy),
        })
    }

    /// A reqwest client for long-lived MCP traffic under the same address filter, proxy and
    /// redirect rules, and connect timeout, but without the total timeout or body cap (event
    /// streams stay open; the rmcp transport applies its own limits).
    pub fn streaming_client(&self) -> Result<reqwest::Client, FetchError> {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.policy.connect_timeout)
            .dns_resolver(PolicyResolver {
                addresses: self.policy.addresses,
            })
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| FetchError::Transport {
                reason: e.without_url().to_string(),
            })
    }

    /// The policy.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// Parses `value` and checks it against the URL rule and, for literal addresses, the
    /// address filter.
    pub fn check_url(&self, field: &'static str, value: &str) -> Result<Url, FetchError> {
        let url = self.policy.urls.check(field, value)?;
        self.check_host(&url)?;
        Ok(url)
    }

    fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        self.policy.urls.check_url("url", url)?;
        self.check_host(url)
    }

    fn check_host(&self, url: &Url) -> Result<(), FetchError> {
        let literal = match url.host() {
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.policy.permits_address(ip) => Err(FetchError::ForbiddenAddress {
                host: ip.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// `GET url`, accepting JSON.
    pub async fn get(&self, url: &Url) -> Result<FetchResponse, FetchError> {
        self.check_target(url)?;
        let request = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json");
        self.send(request, url).await
    }

    /// `POST url` with a form body (already encoded) and an optional `Authorization` value.
    pub async fn post_form(
        &self,
        url: &Url,
        body: String,
        authorization: Option<&Secret>,
    ) -> Result<FetchResponse, FetchError> {
        self.check_target(url)?;
        let mut request = self
            .client
            .post(url.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.expose());
        }
        self.send(request, url).await
    }

    /// `POST url` with a JSON body and no credentials: the unauthenticated MCP request that
    /// draws the server's `401` challenge (CL-1).
    pub async fn post_json_unauthenticated(
        &self,
        url: &Url,
        body: Vec<u8>,
    ) -> Result<FetchResponse, FetchError> {
        self.check_target(url)?;
        let request = self
            .client
            .post(url.clone())
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request, url).await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<FetchResponse, FetchError> {
        let timeout = self.policy.timeout;
        match tokio::time::timeout(timeout, self.send_inner(request, url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { after: timeout }),
        }
    }

    async fn send_inner(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<FetchResponse, FetchError> {
        let mut response = request.send().await.map_err(|e| self.map_error(&e, url))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(FetchError::Redirect { status });
        }
        let max = self.policy.max_body;
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(FetchError::TooLarge { max });
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.map_error(&e, url))?
        {
            if body.len().saturating_add(chunk.len()) > max {
                // Dropping the response here aborts the transfer.
                return Err(FetchError::TooLarge { max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchResponse {
            status,
            headers,
            body,
        })
    }

    fn map_error(&self, error: &reqwest::Error, url: &Url) -> FetchError {
        let mut source: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = source {
            if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
                return FetchError::ForbiddenAddress {
                    host: refused.host.clone(),
                };
            }
            source = e.source();
        }
        if error.is_timeout() {
            return FetchError::Timeout {
                after: self.policy.timeout,
            };
        }
        let reason = match url.host_str() {
            Some(host) => format!("{host}: {}", root_cause(error)),
            None => root_cause(error),
        };
        if error.is_connect() {
            FetchError::Connect { reason }
        } else {
            FetchError::Transport { reason }
        }
    }
}

/// The innermost error message (reqwest's own message names the URL, which we report apart).
fn root_cause(error: &reqwest::Error) -> String {
    let mut last: &(dyn StdError + 'static) = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {

    #[test]
    fn sec10_fetch_response_debug_hides_the_body() {
        let r = FetchResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: br#"{"access_token":"at-7f3k9QzT-distinctive"}"#.to_vec(),
        };
        for text in [format!("{r:?}"), format!("{r:#?}")] {
            assert!(!text.contains("7f3k9QzT"), "{text}");
            assert!(text.contains("200") && text.contains("bytes"), "{text}");
        }
    }
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_classes() {
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(classify(ip(public)), AddressClass::Public, "{public}");
        }
        for lo in ["127.0.0.1", "127.255.0.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(classify(ip(lo)), AddressClass::Loopback, "{lo}");
        }
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "2001::1",
        ] {
            assert_eq!(classify(ip(private)), AddressClass::NonPublic, "{private}");
        }
        assert_eq!(classify(ip("172.32.0.1")), AddressClass::Public);
        assert_eq!(classify(ip("64:ff9b::808:808")), AddressClass::Public);
    }

    #[test]
    fn policy_opt_ins() {
        let strict = FetchPolicy::new();
        assert!(!strict.permits_address(ip("127.0.0.1")));
        assert!(!strict.permits_address(ip("10.0.0.1")));
        let dev = FetchPolicy::insecure_loopback_development();
        assert!(dev.permits_address(ip("127.0.0.1")));
        assert!(!dev.permits_address(ip("10.0.0.1")));
        assert!(!dev.permits_address(ip("169.254.169.254")));
        let private = FetchPolicy::new().insecure_allow_private_addresses(true);
        assert!(private.permits_address(ip("10.0.0.1")));
        assert!(!private.permits_address(ip("127.0.0.1")));
    }

    #[test]
    fn literal_addresses_checked_before_any_request() {
        let fetcher = HttpFetcher::new(
            FetchPolicy::new().with_url_policy(UrlPolicy::insecure_allow_loopback_http()),
        )
        .unwrap();
        // Loopback http passes the URL rule but not the address rule.
        assert_eq!(
            fetcher.check_url("x", "http://127.0.0.1:9/").unwrap_err(),
            FetchError::ForbiddenAddress {
                host: "127.0.0.1".into()
            }
        );
        assert_eq!(
            fetcher
                .check_url("x", "https://169.254.169.254/")
                .unwrap_err(),
            FetchError::ForbiddenAddress {
                host: "169.254.169.254".into()
            }
        );
        assert_eq!(
            fetcher.check_url("x", "https://[fd00::1]/").unwrap_err(),
            FetchError::ForbiddenAddress {
                host: "fd00::1".into()
            }
        );
        assert!(matches!(
            fetcher.check_url("x", "http://as.example/").unwrap_err(),
            FetchError::Url(UrlError::NotHttps { .. })
        ));
    }
}
