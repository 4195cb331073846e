// A real OpenID Connect provider for Headway's end-to-end tests: panva's
// certified `oidc-provider`, on 127.0.0.1 only, with one confidential client
// and a tiny login page of its own so a test's HTTP client can log in by
// submitting a form.
//
//   node provider.mjs
//
// Environment:
//   OIDC_TEST_ACCOUNTS   JSON file: { "<login>": { "sub": "...", <claims> } }.
//                        Read at every login and claims request, so a test
//                        can change a person's e-mail between logins.
//   OIDC_TEST_CLIENT_ID, OIDC_TEST_CLIENT_SECRET   the client (headway/secret).
//   OIDC_TEST_MODE       "wrong-jwks": publish a key set that does not hold
//                        the key ID tokens are signed with (the relying party
//                        must refuse them).
//   OIDC_TEST_PORT       the port to listen on (default: any free one).
//
// Prints "issuer <url>" on stdout once it listens; stops when stdin closes
// or on SIGTERM.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const accountsFile = process.env.OIDC_TEST_ACCOUNTS;
const clientId = process.env.OIDC_TEST_CLIENT_ID || 'headway';
const clientSecret = process.env.OIDC_TEST_CLIENT_SECRET || 'secret';
const mode = process.env.OIDC_TEST_MODE || '';

function accounts() {
  if (!accountsFile) return {};
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

function accountBySub(sub) {
  return Object.values(accounts()).find((a) => a.sub === sub);
}

function rsaJwk(kid) {
  // The key comes out of the generation already as a JWK. Exporting the
  // generated KeyObject instead can deadlock Node 20: when the garbage
  // collector finalises the finished generation job during the export,
  // both lock the key's mutex on the same thread (seen as "the OpenID
  // provider did not start within 30 s").
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'jwk' },
  });
  return { ...privateKey, kid, alg: 'RS256', use: 'sig' };
}

function publicPart(jwk) {
  const { kty, n, e, kid, alg, use } = jwk;
  return { kty, n, e, kid, alg, use };
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function formBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const signingKey = rsaJwk('signing-key');
// Same key ID, other key: what a forger without the real key would sign with.
const otherKey = rsaJwk('signing-key');

const server = createServer();
await new Promise((resolve) => server.listen(Number(process.env.OIDC_TEST_PORT || 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      // A native client may use any port on a loopback redirect URI
      // (RFC 8252 §7.3): Headway's port is only known once it runs.
      application_type: 'native',
      // Machine logins, and administrators signing in to the web console.
      redirect_uris: ['http://127.0.0.1/oidc/callback', 'http://127.0.0.1/admin/oidc/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'picture'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    if (!accountBySub(sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        // Fresh each time: the test may have changed the account file.
        return { ...(accountBySub(sub) || {}), sub };
      },
    };
  },
});

provider.use(async (ctx, next) => {
  if (mode === 'wrong-jwks' && ctx.method === 'GET' && ctx.path === '/jwks') {
    ctx.type = 'application/jwk-set+json';
    ctx.body = JSON.stringify({ keys: [publicPart(otherKey)] });
    return;
  }
  const m = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!m) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name === 'login' && ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${escapeHtml(details.uid)}/login">
<input name="login" autofocus><button type="submit">Sign in</button></form>`;
    return;
  }
  if (details.prompt.name === 'login' && ctx.method === 'POST' && m[2]) {
    const login = (await formBody(ctx.req)).get('login') || '';
    const account = accounts()[login];
    if (!account) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = `unknown login ${escapeHtml(login)}`;
      return;
    }
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: account.sub } });
    ctx.respond = false;
    return;
  }
  if (details.prompt.name === 'consent') {
    // First-party client: consent is granted without asking.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    if (details.prompt.details.missingOIDCScope) {
      grant.addOIDCScope(details.prompt.details.missingOIDCScope.join(' '));
    }
    if (details.prompt.details.missingOIDCClaims) {
      grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
    }
    const grantId = await grant.save();
    await provider.interactionFinished(ctx.req, ctx.res, { consent: details.grantId ? {} : { grantId } });
    ctx.respond = false;
    return;
  }
  ctx.status = 400;
  ctx.body = `unexpected prompt ${details.prompt.name}`;
});

server.on('request', provider.callback());
process.stdout.write(`issuer ${issuer}\n`);
// Stdout carried the one line the test reads; the rest (the provider's own
// notices included) goes to stderr.
console.log = console.error;
console.info = console.error;
console.warn = console.error;

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
