"""Interop client: the official MCP Python SDK (`mcp` on PyPI) against the ema-rs reference servers.

    python client.py '{"idp":"http://127.0.0.1:P1","authorization_server":"http://127.0.0.1:P2","mcp":"http://127.0.0.1:P3/mcp"}'

The SDK's `IdentityAssertionOAuthProvider` (mcp.client.auth.extensions.identity_assertion) runs
hop 3: authorization-server metadata from the configured issuer, the RFC 7523 jwt-bearer request
with the ID-JAG, the bearer token on MCP requests, and a new grant on 403 insufficient_scope. The
SDK leaves hops 1 and 2 to the application ("obtaining the ID-JAG ... is deployment-specific and
out of scope for the SDK"), so this script signs in at the IdP's login form and performs the
RFC 8693 token exchange itself, inside the provider's `assertion_provider` callback (README,
"SDK gaps"). Exits 0 only if `whoami` and `add_task` both succeed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx2
from mcp.client import Client
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

# The reference servers' development registrations (examples/reference/src/config.rs, `defaults`).
USERNAME, PASSWORD = "ana", "ana-password"
IDP_CLIENT_ID, IDP_CLIENT_SECRET = "desk-idp-01", "desk-secret"
IDP_REDIRECT_URI = "http://127.0.0.1/callback"
AS_CLIENT_ID, AS_CLIENT_SECRET = "tc_5f2a91", "tc-secret"
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
        ok = not whoami.is_error and not added.is_error
        log("OK" if ok else "FAILED: a tool call returned an error")
        return ok


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", None) or c.model_dump_json() for c in result.content)


if __name__ == "__main__":
    try:
        sys.exit(0 if asyncio.run(main()) else 1)
    except Exception as error:  # noqa: BLE001 - report any failure and exit non-zero
        print(f"[py] FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from error
