// Interop client: the official MCP TypeScript SDK (`@modelcontextprotocol/client`) against the
// ema-rs reference servers (`demo --serve`).
//
//   node client.mjs '{"idp":"http://127.0.0.1:P1","authorization_server":"http://127.0.0.1:P2","mcp":"http://127.0.0.1:P3/mcp"}'
//
// Only hop 1 (single sign-on at the IdP, to get an ID token) is plain HTTP written here: the SDK
// leaves it to the application. Everything after it is the SDK's: `CrossAppAccessProvider` runs
// discovery (protected-resource and authorization-server metadata), and its assertion callback
// uses the SDK's `discoverAndRequestJwtAuthGrant` for the RFC 8693 token exchange at the IdP; the
// provider then sends the RFC 7523 jwt-bearer request to the authorization server and the
// transport presents the access token (and steps scopes up on 403 insufficient_scope).
//
// Then the standard MCP authorization code flow (`codeFlow`): the SDK's own OAuth client machinery
// (`OAuthClientProvider` given to the transport) with the pre-registered public client
// `mcp-client`; the script plays the user's browser (follows the redirects to the IdP's login form,
// posts ana's credentials, follows back to the client's redirect URI) and hands the callback's
// parameters to `transport.finishAuth`.
// Exits 0 only if `whoami` and `add_task` succeed on both paths.

import { createHash, randomBytes } from 'node:crypto';

import {
    Client,
    CrossAppAccessProvider,
    StreamableHTTPClientTransport,
    discoverAndRequestJwtAuthGrant,
    UnauthorizedError
} from '@modelcontextprotocol/client';

// The reference servers' development registrations (examples/reference/src/config.rs, `defaults`).
// At the IdP, the client `demo --serve` registers for `client_secret_post`: the SDK's token
// exchange sends the secret only in the body, and each client has one method (D-24).
const USER = { username: 'ana', password: 'ana-password' };
const IDP_CLIENT = { id: 'desk-idp-post', secret: 'desk-post-secret', redirectUri: 'http://127.0.0.1/callback' };
const AS_CLIENT = { id: 'tc_5f2a91', secret: 'tc-secret' };
// The code flow's public client at the authorization server, with its one registered redirect URI
// (examples/reference/src/config.rs, `DEV_CODE_FLOW_CLIENT`). Nothing listens there: the browser
// below stops at the redirect to it and hands its query to the SDK.
const CODE_CLIENT = { id: 'mcp-client', redirectUri: 'http://127.0.0.1:33418/callback' };
// What this agent asks the IdP for; the IdP's policy decides what it gets.
const SCOPE = 'tasks.read tasks.write';

const b64url = buf => Buffer.from(buf).toString('base64url');
const log = (...args) => console.log('[ts]', ...args);

/** Hop 1: the IdP's login form with PKCE S256, state and nonce; returns the ID token. */
async function signIn(idp) {
    const verifier = b64url(randomBytes(32));
    const state = b64url(randomBytes(16));
    const nonce = b64url(randomBytes(16));
    const form = new URLSearchParams({
        response_type: 'code',
        client_id: IDP_CLIENT.id,
        redirect_uri: IDP_CLIENT.redirectUri,
        scope: 'openid email',
        state,
        nonce,
        code_challenge: b64url(createHash('sha256').update(verifier).digest()),
        code_challenge_method: 'S256',
        username: USER.username,
        password: USER.password
    });
    const login = await fetch(`${idp}/authorize`, { method: 'POST', body: form, redirect: 'manual' });
    if (login.status !== 303) throw new Error(`IdP login: expected 303, got ${login.status}`);
    const location = new URL(login.headers.get('location') ?? '');
    if (location.searchParams.get('state') !== state) throw new Error('IdP login: state mismatch');
    const code = location.searchParams.get('code');
    if (!code) throw new Error('IdP login: no code in the redirect');

    // client_secret_post, the one method this client is registered for.
    const token = await fetch(`${idp}/token`, {
        method: 'POST',
        body: new URLSearchParams({
            grant_type: 'authorization_code',
            code,
            code_verifier: verifier,
            redirect_uri: IDP_CLIENT.redirectUri,
            client_id: IDP_CLIENT.id,
            client_secret: IDP_CLIENT.secret
        })
    });
    const body = await token.json().catch(() => ({}));
    if (token.status !== 200 || typeof body.id_token !== 'string') {
        throw new Error(`IdP token: HTTP ${token.status} ${body.error ?? ''}`);
    }
    return body.id_token;
}

/**
 * The transport's and the providers' `fetch`: logs each request's method, URL (origin and path)
 * and status, never headers, query or bodies, so no token or code is printed. The responses are
 * passed on untouched: the SDK sees our servers' documents exactly as served.
 */
function loggingFetch(label) {
    return async (input, init) => {
        const url = new URL(input instanceof Request ? input.url : String(input));
        const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
        const response = await fetch(input, init);
        log(`  ${label} ${method} ${url.origin}${url.pathname} -> ${response.status}`);
        return response;
    };
}

/**
 * The user's browser on the code flow: from the authorization URL the SDK wants opened, follow
 * the redirects (AS authorization endpoint -> IdP), fill and post the IdP's login form as ana,
 * follow the redirects back (IdP -> AS callback -> the client's redirect URI) and return the
 * redirect URI with its query, as a browser would deliver it to a loopback listener. Cookies are
 * kept per host, as a browser does. Each hop is printed without its query (codes, state).
 */
async function playBrowser(authorizationUrl, redirectUri) {
    const jar = new Map();
    const send = async (url, init = {}) => {
        const cookie = jar.get(url.hostname);
        const headers = { ...(init.headers ?? {}), ...(cookie ? { cookie: [...cookie].map(([k, v]) => `${k}=${v}`).join('; ') } : {}) };
        const response = await fetch(url, { ...init, headers, redirect: 'manual' });
        for (const line of response.headers.getSetCookie()) {
            const [pair] = line.split(';');
            const eq = pair.indexOf('=');
            if (eq > 0) {
                if (!jar.has(url.hostname)) jar.set(url.hostname, new Map());
                jar.get(url.hostname).set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
            }
        }
        log(`  browser ${init.method ?? 'GET'} ${url.origin}${url.pathname} -> ${response.status}`);
        return response;
    };
    const target = new URL(redirectUri);
    let url = new URL(authorizationUrl);
    let signedIn = false;
    for (let hop = 0; hop < 10; hop += 1) {
        if (url.origin === target.origin && url.pathname === target.pathname) {
            log(`  browser -> ${url.origin}${url.pathname} (the client's redirect URI)`);
            return url;
        }
        const response = await send(url);
        if (response.status >= 300 && response.status < 400) {
            url = new URL(response.headers.get('location') ?? '', url);
            continue;
        }
        const html = await response.text();
        if (response.status !== 200 || !/<form/i.test(html) || signedIn) {
            throw new Error(`browser: unexpected page at ${url.origin}${url.pathname} (HTTP ${response.status})`);
        }
        // The IdP's login form: its hidden fields, then the user's credentials, posted to the
        // form's action (none: the page's own URL).
        const form = new URLSearchParams();
        for (const [, name, value] of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
            form.append(name, unescapeHtml(value));
        }
        form.append('username', USER.username);
        form.append('password', USER.password);
        const action = html.match(/<form[^>]*action="([^"]*)"/i)?.[1];
        const post = await send(action ? new URL(unescapeHtml(action), url) : url, { method: 'POST', body: form });
        if (post.status < 300 || post.status >= 400) throw new Error(`browser: the login form answered HTTP ${post.status}`);
        signedIn = true;
        url = new URL(post.headers.get('location') ?? '', url);
    }
    throw new Error('browser: too many redirects');
}

const unescapeHtml = s =>
    s.replace(/&(lt|gt|amp|quot|#39);/g, (_, e) => ({ lt: '<', gt: '>', amp: '&', quot: '"', '#39': "'" })[e]);

/**
 * The SDK's `OAuthClientProvider` for an interactive client, kept in memory: the pre-registered
 * client, PKCE verifier, discovery state and tokens as the SDK hands them over; opening the
 * authorization URL means running the browser above.
 */
class BrowserProvider {
    /** `issuer`: the authorization server the client is registered at (SEP-2352 binding). */
    constructor(issuer) {
        this.issuer = issuer;
        this.stored = {};
        this.callback = undefined;
        this.rounds = 0;
    }
    get redirectUrl() {
        return CODE_CLIENT.redirectUri;
    }
    get clientMetadata() {
        return {
            client_name: 'ema-rs interop (TypeScript SDK, code flow)',
            redirect_uris: [CODE_CLIENT.redirectUri],
            grant_types: ['authorization_code'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
    }
    state() {
        this.stored.state = b64url(randomBytes(16));
        return this.stored.state;
    }
    clientInformation() {
        return this.stored.client ?? { client_id: CODE_CLIENT.id, issuer: this.issuer };
    }
    saveClientInformation(info) {
        this.stored.client = info;
    }
    tokens() {
        return this.stored.tokens;
    }
    saveTokens(tokens) {
        this.stored.tokens = tokens;
    }
    saveCodeVerifier(verifier) {
        this.stored.verifier = verifier;
    }
    codeVerifier() {
        return this.stored.verifier;
    }
    saveDiscoveryState(state) {
        this.stored.discovery = state;
    }
    discoveryState() {
        return this.stored.discovery;
    }
    async redirectToAuthorization(authorizationUrl) {
        this.rounds += 1;
        log(`the SDK opens the authorization endpoint ${authorizationUrl.origin}${authorizationUrl.pathname} (round ${this.rounds})`);
        this.callback = await playBrowser(authorizationUrl, CODE_CLIENT.redirectUri);
    }
}

/** The standard MCP authorization code flow with the SDK's provider; whether both tool calls worked. */
async function codeFlow(urls) {
    log('-- standard MCP authorization code flow (pre-registered public client', CODE_CLIENT.id + ')');
    const provider = new BrowserProvider(urls.authorization_server);
    const newTransport = () =>
        new StreamableHTTPClientTransport(new URL(urls.mcp), { authProvider: provider, fetch: loggingFetch('http') });
    const first = new Client({ name: 'ema-interop-ts-code', version: '0.0.0' });
    let transport = newTransport();
    try {
        await first.connect(transport);
        throw new Error('the MCP server accepted a request without a token');
    } catch (error) {
        if (!(error instanceof UnauthorizedError) || provider.callback === undefined) throw error;
    }
    await redeem(transport, provider);

    let client = new Client({ name: 'ema-interop-ts-code', version: '0.0.0' });
    transport = newTransport();
    await client.connect(transport);
    const tools = await client.listTools();
    log('tools:', tools.tools.map(t => t.name).join(', '));
    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    log('whoami ->', textOf(whoami));
    // add_task needs tasks.write: the server's 403 insufficient_scope makes the SDK authorize
    // again for the union of scopes (a second sign-in in the browser), then the call is retried.
    let added;
    try {
        added = await client.callTool({ name: 'add_task', arguments: { title: 'interop: TypeScript SDK, code flow' } });
    } catch (error) {
        if (!(error instanceof UnauthorizedError) || provider.callback === undefined) throw error;
        await redeem(transport, provider);
        await client.close();
        client = new Client({ name: 'ema-interop-ts-code', version: '0.0.0' });
        transport = newTransport();
        await client.connect(transport);
        added = await client.callTool({ name: 'add_task', arguments: { title: 'interop: TypeScript SDK, code flow' } });
    }
    log('add_task ->', textOf(added));
    log(`access token scope now: ${provider.tokens()?.scope ?? '(unknown)'} (sign-ins: ${provider.rounds})`);
    await client.close();
    return !whoami.isError && !added.isError;
}

/**
 * The redirect the browser delivered: the client checks `state` (the SDK leaves that to the
 * application) and gives the SDK the query, which checks `iss` (RFC 9207) and redeems the code.
 */
async function redeem(transport, provider) {
    const params = provider.callback.searchParams;
    provider.callback = undefined;
    if (params.get('state') !== provider.stored.state) throw new Error('code flow: state mismatch');
    log(`redirect received: code ${params.has('code') ? 'present' : 'MISSING'}, state matches, iss=${params.get('iss') ?? '(none)'}`);
    await transport.finishAuth(params);
    log('code redeemed; access token scope:', provider.tokens()?.scope ?? '(unknown)');
}

const textOf = result => (result.content ?? []).map(c => (c.type === 'text' ? c.text : JSON.stringify(c))).join('\n');

async function main() {
    const urls = JSON.parse(process.argv[2] ?? process.env.EMA_SERVERS ?? '');
    const idToken = await signIn(urls.idp);
    log('signed in at the IdP as', USER.username, '(ID token obtained)');

    let exchanges = 0;
    const provider = new CrossAppAccessProvider({
        clientId: AS_CLIENT.id,
        clientSecret: AS_CLIENT.secret,
        clientName: 'ema-rs interop (TypeScript SDK)',
        fetchFn: loggingFetch('http'),
        expectedIssuer: urls.authorization_server,
        assertion: async ctx => {
            exchanges += 1;
            // ctx comes from the SDK's discovery: audience = the AS issuer, resource = the PRM
            // `resource`, scope = the SDK's scope selection (challenge / step-up union).
            log(`token exchange #${exchanges}: audience=${ctx.authorizationServerUrl} resource=${ctx.resourceUrl} scope=${ctx.scope ?? '(none)'}`);
            const grant = await discoverAndRequestJwtAuthGrant({
                idpUrl: urls.idp,
                audience: ctx.authorizationServerUrl,
                resource: ctx.resourceUrl,
                idToken,
                clientId: IDP_CLIENT.id,
                clientSecret: IDP_CLIENT.secret,
                scope: ctx.scope,
                fetchFn: ctx.fetchFn
            });
            log(`  ID-JAG issued (expires_in=${grant.expiresIn ?? '?'}, scope=${grant.scope ?? '(as requested)'})`);
            return grant.jwtAuthGrant;
        }
    });

    const client = new Client(
        { name: 'ema-interop-ts', version: '0.0.0' },
        { capabilities: { extensions: { 'io.modelcontextprotocol/enterprise-managed-authorization': {} } } }
    );
    const transport = new StreamableHTTPClientTransport(new URL(urls.mcp), {
        authProvider: provider,
        fetch: loggingFetch('http')
    });
    await client.connect(transport);
    log('connected; access token scope:', provider.tokens()?.scope ?? '(unknown)');

    const tools = await client.listTools();
    log('tools:', tools.tools.map(t => t.name).join(', '));

    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    log('whoami ->', textOf(whoami));
    const added = await client.callTool({ name: 'add_task', arguments: { title: 'interop: TypeScript SDK' } });
    log('add_task ->', textOf(added));
    log('access token scope now:', provider.tokens()?.scope ?? '(unknown)', `(token exchanges: ${exchanges})`);

    await client.close();
    const emaOk = !whoami.isError && !added.isError;
    log(emaOk ? 'EMA flow OK' : 'EMA flow FAILED: a tool call returned an error');

    const codeOk = await codeFlow(urls);
    log(codeOk ? 'code flow OK' : 'code flow FAILED: a tool call returned an error');
    const ok = emaOk && codeOk;
    log(ok ? 'OK' : 'FAILED');
    return ok;
}

main().then(
    ok => process.exit(ok ? 0 : 1),
    error => {
        console.error('[ts] FAILED:', error?.stack ?? error);
        process.exit(1);
    }
);
