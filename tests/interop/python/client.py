"""Interop client: the official MCP Python SDK (`mcp` on PyPI) against the ema-rs reference servers.

    python client.py '{"idp":"http://127.0.0.1:P1","authorization_server":"http://127.0.0.1:P2","mcp":"http://127.0.0.1:P3/mcp"}'

The SDK's `IdentityAssertionOAuthProvider` (mcp.client.auth.extensions.identity_assertion) runs
hop 3: authorization-server metadata from the configured issuer, the RFC 7523 jwt-bearer request
with the ID-JAG, the bearer token on MCP requests, and a new grant on 403 insufficient_scope. The
SDK leaves hops 1 and 2 to the application ("obtaining the ID-JAG ... is deployment-specific and
out of scope for the SDK"), so this script signs in at the IdP's login form and performs the
RFC 8693 token exchange itself, inside the provider's `assertion_provider` callback (README,
"SDK gaps").

Then the standard MCP authorization code flow (`code_flow`): the SDK's `OAuthClientProvider`
with the pre-registered public client `mcp-client`; the script plays the user's browser (follows
the redirects to the IdP's login form, posts ana's credentials, follows back to the client's
redirect URI) in the provider's `redirect_handler` and hands the redirect's `code`, `state` and
`iss` to the SDK through its `callback_handler`.

Exits 0 only if `whoami` and `add_task` succeed on both paths.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import sys
import html
import re
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import httpx2
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

# The reference servers' development registrations (examples/reference/src/config.rs, `defaults`).
USERNAME, PASSWORD = "ana", "ana-password"
IDP_CLIENT_ID, IDP_CLIENT_SECRET = "desk-idp-01", "desk-secret"
IDP_REDIRECT_URI = "http://127.0.0.1/callback"
AS_CLIENT_ID, AS_CLIENT_SECRET = "tc_5f2a91", "tc-secret"
# The code flow's public client at the authorization server, with its one registered redirect URI
# (examples/reference/src/config.rs, `DEV_CODE_FLOW_CLIENT`). Nothing listens there: the browser
# below stops at the redirect to it and hands its query to the SDK.
CODE_CLIENT_ID, CODE_REDIRECT_URI = "mcp-client", "http://127.0.0.1:33418/callback"
# What this agent asks for; the IdP's policy decides what it gets.
SCOPE = "tasks.read tasks.write"
EMA_EXTENSION = "io.modelcontextprotocol/enterprise-managed-authorization"

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


def log(*args: Any) -> None:
    print("[py]", *args, flush=True)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode each part, then base64 the colon-joined pair."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


async def sign_in(http: httpx2.AsyncClient, idp: str) -> str:
    """Hop 1: the IdP's login form with PKCE S256, state and nonce; returns the ID token."""
    verifier = b64url(secrets.token_bytes(32))
    state = b64url(secrets.token_bytes(16))
    form = {
        "response_type": "code",
        "client_id": IDP_CLIENT_ID,
        "redirect_uri": IDP_REDIRECT_URI,
        "scope": "openid email",
        "state": state,
        "nonce": b64url(secrets.token_bytes(16)),
        "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        "username": USERNAME,
        "password": PASSWORD,
    }
    login = await http.post(f"{idp}/authorize", data=form)
    if login.status_code != 303:
        raise RuntimeError(f"IdP login: expected 303, got {login.status_code}")
    query = parse_qs(urlsplit(login.headers.get("location", "")).query)
    if query.get("state") != [state] or not query.get("code"):
        raise RuntimeError("IdP login: bad redirect (state or code)")
    token = await http.post(
        f"{idp}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "code_verifier": verifier,
            "redirect_uri": IDP_REDIRECT_URI,
        },
        headers={"Authorization": basic(IDP_CLIENT_ID, IDP_CLIENT_SECRET)},
    )
    body = token.json()
    if token.status_code != 200 or not isinstance(body.get("id_token"), str):
        raise RuntimeError(f"IdP token: HTTP {token.status_code} {body.get('error', '')}")
    return body["id_token"]


class MemoryStorage:
    """The SDK's `TokenStorage` protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class LoggingTransport(httpx2.AsyncBaseTransport):
    """The SDK's HTTP transport with a log line per request: method, URL (origin and path) and
    status, never headers, query or bodies, so no token or code is printed. Responses are passed
    on untouched: the SDK sees our servers' documents exactly as served."""

    def __init__(self, label: str = "http") -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._label = label

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        split = urlsplit(str(request.url))
        log(f"  {self._label} {request.method} {split.scheme}://{split.netloc}{split.path} -> {response.status_code}")
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def play_browser(authorization_url: str) -> str:
    """The user's browser on the code flow: from the authorization URL the SDK wants opened,
    follow the redirects (AS authorization endpoint -> IdP), fill and post the IdP's login form
    as ana, follow the redirects back (IdP -> AS callback -> the client's redirect URI) and return
    the redirect URI with its query, as a browser would deliver it to a loopback listener. The
    client keeps cookies as a browser does. Each hop is printed without its query."""
    target = urlsplit(CODE_REDIRECT_URI)
    url = authorization_url
    signed_in = False
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:

        async def send(method: str, to: str, form: dict[str, str] | None = None) -> httpx2.Response:
            response = await browser.request(method, to, data=form)
            split = urlsplit(to)
            log(f"  browser {method} {split.scheme}://{split.netloc}{split.path} -> {response.status_code}")
            return response

        for _ in range(10):
            split = urlsplit(url)
            if split[:3] == target[:3]:
                log(f"  browser -> {split.scheme}://{split.netloc}{split.path} (the client's redirect URI)")
                return url
            response = await send("GET", url)
            if 300 <= response.status_code < 400:
                url = urljoin(url, response.headers.get("location", ""))
                continue
            page = response.text
            if response.status_code != 200 or "<form" not in page or signed_in:
                raise RuntimeError(f"browser: unexpected page at {split.netloc}{split.path} (HTTP {response.status_code})")
            # The IdP's login form: its hidden fields, then the user's credentials, posted to
            # the form's action (none: the page's own URL).
            form = {
                name: html.unescape(value)
                for name, value in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
            }
            form["username"], form["password"] = USERNAME, PASSWORD
            action = re.search(r'<form[^>]*action="([^"]*)"', page)
            post = await send("POST", urljoin(url, html.unescape(action.group(1))) if action else url, form)
            if not 300 <= post.status_code < 400:
                raise RuntimeError(f"browser: the login form answered HTTP {post.status_code}")
            signed_in = True
            url = urljoin(url, post.headers.get("location", ""))
    raise RuntimeError("browser: too many redirects")


async def code_flow(mcp_url: str, auth_server: str) -> bool:
    """The standard MCP authorization code flow with the SDK's `OAuthClientProvider`."""
    log(f"-- standard MCP authorization code flow (pre-registered public client {CODE_CLIENT_ID})")
    storage = MemoryStorage()
    # Pre-registered at this authorization server (SEP-2352: the issuer it is bound to).
    storage.client_info = OAuthClientInformationFull(
        client_id=CODE_CLIENT_ID,
        redirect_uris=[CODE_REDIRECT_URI],
        token_endpoint_auth_method="none",
        grant_types=["authorization_code"],
        issuer=auth_server,
    )
    delivered: list[str] = []
    rounds = 0

    async def open_in_browser(authorization_url: str) -> None:
        nonlocal rounds
        rounds += 1
        split = urlsplit(authorization_url)
        log(f"the SDK opens the authorization endpoint {split.scheme}://{split.netloc}{split.path} (round {rounds})")
        delivered.append(await play_browser(authorization_url))

    async def redirect_received() -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(delivered.pop()).query)
        one = lambda name: query[name][0] if name in query else None  # noqa: E731
        log(f"redirect received: code {'present' if one('code') else 'MISSING'}, iss={one('iss') or '(none)'}")
        # The SDK checks `state` against the one it sent and `iss` (RFC 9207), then redeems the code.
        return AuthorizationCodeResult(code=one("code") or "", state=one("state"), iss=one("iss"))

    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="ema-rs interop (Python SDK, code flow)",
            redirect_uris=[CODE_REDIRECT_URI],
            grant_types=["authorization_code"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=open_in_browser,
        callback_handler=redirect_received,
    )
    http = httpx2.AsyncClient(auth=provider, transport=LoggingTransport(), timeout=30)
    async with http, Client(streamable_http_client(mcp_url, http_client=http)) as client:
        log("connected; access token scope:", storage.tokens.scope if storage.tokens else "(unknown)")
        tools = await client.list_tools()
        log("tools:", ", ".join(t.name for t in tools.tools))
        whoami = await client.call_tool("whoami", {})
        log("whoami ->", text_of(whoami))
        added = await client.call_tool("add_task", {"title": "interop: Python SDK, code flow"})
        log("add_task ->", text_of(added))
        log(f"access token scope now: {storage.tokens.scope if storage.tokens else '(unknown)'} (sign-ins: {rounds})")
    return not whoami.is_error and not added.is_error


async def main() -> bool:
    urls = json.loads(sys.argv[1])
    idp, auth_server, mcp_url = urls["idp"], urls["authorization_server"], urls["mcp"]

    async with httpx2.AsyncClient(timeout=30) as plain:
        id_token = await sign_in(plain, idp)
        log("signed in at the IdP as", USERNAME, "(ID token obtained)")

        # Hop 2 (written here: the SDK has no token-exchange helper). The IdP's token endpoint
        # comes from its RFC 8414 metadata; the provider hands us the AS issuer (the ID-JAG
        # audience) and the MCP server's resource identifier.
        idp_metadata = (await plain.get(f"{idp}/.well-known/oauth-authorization-server")).json()
        exchanges = 0

        async def fetch_id_jag(audience: str, resource: str) -> str:
            nonlocal exchanges
            exchanges += 1
            log(f"token exchange #{exchanges}: audience={audience} resource={resource} scope={SCOPE}")
            response = await plain.post(
                idp_metadata["token_endpoint"],
                data={
                    "grant_type": TOKEN_EXCHANGE,
                    "requested_token_type": ID_JAG,
                    "audience": audience,
                    "resource": resource,
                    "scope": SCOPE,
                    "subject_token": id_token,
                    "subject_token_type": ID_TOKEN,
                },
                headers={"Authorization": basic(IDP_CLIENT_ID, IDP_CLIENT_SECRET)},
            )
            body = response.json()
            if response.status_code != 200:
                raise RuntimeError(f"token exchange: HTTP {response.status_code} {body.get('error')}")
            if body.get("issued_token_type") != ID_JAG:  # CL-5
                raise RuntimeError(f"token exchange: unexpected issued_token_type {body.get('issued_token_type')}")
            log(f"  ID-JAG issued (expires_in={body.get('expires_in')}, scope={body.get('scope', '(as requested)')})")
            return body["access_token"]

        storage = MemoryStorage()
        provider = IdentityAssertionOAuthProvider(
            server_url=mcp_url,
            storage=storage,
            client_id=AS_CLIENT_ID,
            client_secret=AS_CLIENT_SECRET,
            # The AS client is registered for client_secret_basic (D-24); the SDK's default is
            # client_secret_post.
            token_endpoint_auth_method="client_secret_basic",
            issuer=auth_server,
            assertion_provider=fetch_id_jag,
            scope=SCOPE,
        )
        http = httpx2.AsyncClient(auth=provider, transport=LoggingTransport(), timeout=30)
        async with http, Client(
            streamable_http_client(mcp_url, http_client=http),
            extensions=[advertise(EMA_EXTENSION, {})],
        ) as client:
            log("connected; access token scope:", storage.tokens.scope if storage.tokens else "(unknown)")
            tools = await client.list_tools()
            log("tools:", ", ".join(t.name for t in tools.tools))
            whoami = await client.call_tool("whoami", {})
            log("whoami ->", text_of(whoami))
            added = await client.call_tool("add_task", {"title": "interop: Python SDK"})
            log("add_task ->", text_of(added))
            log(f"token exchanges: {exchanges}")
        ema_ok = not whoami.is_error and not added.is_error
        log("EMA flow OK" if ema_ok else "EMA flow FAILED: a tool call returned an error")

    code_ok = await code_flow(mcp_url, auth_server)
    log("code flow OK" if code_ok else "code flow FAILED: a tool call returned an error")
    ok = ema_ok and code_ok
    log("OK" if ok else "FAILED")
    return ok


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", None) or c.model_dump_json() for c in result.content)


if __name__ == "__main__":
    try:
        sys.exit(0 if asyncio.run(main()) else 1)
    except Exception as error:  # noqa: BLE001 - report any failure and exit non-zero
        print(f"[py] FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from error
