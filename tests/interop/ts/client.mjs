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
// Exits 0 only if `whoami` and `add_task` both succeed.

import { createHash, randomBytes } from 'node:crypto';

import {
    Client,
    CrossAppAccessProvider,
    StreamableHTTPClientTransport,
    discoverAndRequestJwtAuthGrant
} from '@modelcontextprotocol/client';

// The reference servers' development registrations (examples/reference/src/config.rs, `defaults`).
// At the IdP, the client `demo --serve` registers for `client_secret_post`: the SDK's token
// exchange sends the secret only in the body, and each client has one method (D-24).
const USER = { username: 'ana', password: 'ana-password' };
const IDP_CLIENT = { id: 'desk-idp-post', secret: 'desk-post-secret', redirectUri: 'http://127.0.0.1/callback' };
const AS_CLIENT = { id: 'tc_5f2a91', secret: 'tc-secret' };
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
    const ok = !whoami.isError && !added.isError;
    log(ok ? 'OK' : 'FAILED: a tool call returned an error');
    return ok;
}

main().then(
    ok => process.exit(ok ? 0 : 1),
    error => {
        console.error('[ts] FAILED:', error?.stack ?? error);
        process.exit(1);
    }
);
