// A real OpenID Connect provider for the single-sign-on tests: oidc-provider
// on 127.0.0.1, configured from the environment (tests/oidc_peer.py starts it).
//
//   OIDC_PEER_PORT          port the provider listens on
//   OIDC_PEER_ISSUER        its issuer URL (the proxy in front of it)
//   OIDC_PEER_JWKS          path to a private JWKS used to sign ID tokens (RS256)
//   OIDC_PEER_CLIENTS       JSON list of {client_id, client_secret, redirect_uris, ...}
//   OIDC_PEER_CONTROL_PORT  port of the control API (accounts), 127.0.0.1 too
//
// The control API: POST /accounts {sub, preferred_username, email, groups}
// creates or replaces an account; POST /accounts/<sub>/disable and
// /accounts/<sub>/enable; GET /accounts lists them. Every answer is JSON.
//
// Prints "ready" once both servers listen; stops on SIGTERM or SIGINT.

import { readFileSync } from 'node:fs';
import * as http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`oidc_provider.mjs: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('OIDC_PEER_PORT'));
const controlPort = Number(required('OIDC_PEER_CONTROL_PORT'));
const issuer = required('OIDC_PEER_ISSUER');
const jwks = JSON.parse(readFileSync(required('OIDC_PEER_JWKS'), 'utf8'));
const clients = JSON.parse(required('OIDC_PEER_CLIENTS')).map((client) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'RS256',
  ...client,
}));

// sub -> {sub, preferred_username, name, email, email_verified, groups, disabled}
const accounts = new Map();

function accountClaims(account) {
  return {
    sub: account.sub,
    preferred_username: account.preferred_username,
    ...(account.name == null ? {} : { name: account.name }),
    ...(account.email == null
      ? {}
      : { email: account.email, email_verified: account.email_verified }),
    groups: [...account.groups],
  };
}

// A disabled or unknown account is not found: sign-in, the authorization
// endpoint, userinfo and the refresh_token grant (invalid_grant) all refuse it.
async function findAccount(ctx, sub) {
  const account = accounts.get(sub);
  if (!account || account.disabled) {
    return undefined;
  }
  return {
    accountId: sub,
    async claims() {
      return accountClaims(account);
    },
  };
}

// A session whose account has since been disabled signs in again.
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'account_unavailable',
  'the signed-in account is no longer available',
  'login_required',
  (ctx) => Boolean(ctx.oidc.session.accountId && !ctx.oidc.account),
));

const configuration = {
  clients,
  jwks,
  findAccount,
  // Scope-requested claims go into the ID token too, not only userinfo.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'groups'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  interactions: {
    policy,
    url(ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
  // Every client here is first party: the scopes and claims it asks for are
  // granted without a consent screen.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId
      || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== oidc.session.accountId) {
      grant = new oidc.provider.Grant({
        clientId: oidc.client.clientId,
        accountId: oidc.session.accountId,
      });
    }
    grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
    grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  // A refresh token whenever a client allowed the grant asked for offline_access.
  async issueRefreshToken(ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  pkce: {
    methods: ['S256'],
    required: () => true,
  },
  ttl: {
    AccessToken: 10 * 60,
    IdToken: 10 * 60,
    RefreshToken: 24 * 60 * 60,
  },
  cookies: {
    keys: ['s8Jq3vX0pZr7LkWm2cYt9NbE5uHd1GfA'],
    // Cookies are per host, not per port: names of its own keep these apart
    // from the cookies of an app on another port of 127.0.0.1.
    names: {
      session: '_oidc_peer_session',
      interaction: '_oidc_peer_interaction',
      resume: '_oidc_peer_resume',
    },
    // Lax, not None: Chromium drops SameSite=None cookies that are not Secure,
    // and everything here is plain http on loopback.
    long: { signed: true, httpOnly: true, sameSite: 'lax' },
    short: { signed: true, httpOnly: true, sameSite: 'lax' },
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Error</h1><p role="alert">${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`);
  },
};

const provider = new Provider(issuer, configuration);

provider.on('server_error', (ctx, error) => {
  process.stderr.write(`server_error: ${error.stack}\n`);
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><main>${body}</main></body>
</html>
`;
}

function loginPage(uid, { login = '', error } = {}) {
  return page('Sign in', `<h1>Sign in to the test provider</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
  <p><label for="login">Login</label>
  <input id="login" name="login" type="text" value="${escape(login)}" required autofocus></p>
  <p><label for="password">Password</label>
  <input id="password" name="password" type="password"></p>
  <p><button type="submit">Sign in</button></p>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Consent for whatever the prompt finds missing, given at once.
async function grantConsent(req, res, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) {
    grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  }
  if (prompt.details.missingOIDCClaims) {
    grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const saved = await grant.save();
  const consent = grantId ? {} : { grantId: saved };
  return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

// The interaction pages: a login form, and consent given without a page.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
  if (!match) {
    // offline_access is only honoured together with prompt=consent; ask for
    // that consent (given at once) so that asking for offline_access is enough.
    if (ctx.method === 'GET' && ctx.path === '/auth') {
      const { query } = ctx;
      const scopes = String(query.scope ?? '').split(' ');
      const prompts = String(query.prompt ?? '').split(' ').filter(Boolean);
      if (scopes.includes('offline_access') && !prompts.includes('consent') && !prompts.includes('none')) {
        ctx.query = { ...query, prompt: [...prompts, 'consent'].join(' ') };
      }
    }
    return next();
  }
  ctx.set('cache-control', 'no-store');
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (error) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Error</h1><p role="alert">${escape(error.message)}</p>`);
    return undefined;
  }
  if (details.uid !== match[1]) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Error', '<h1>Error</h1><p role="alert">interaction mismatch</p>');
    return undefined;
  }
  const [, uid, login] = match;
  if (details.prompt.name === 'consent') {
    ctx.respond = false;
    return grantConsent(ctx.req, ctx.res, details);
  }
  if (details.prompt.name !== 'login') {
    ctx.status = 501;
    ctx.body = `prompt ${details.prompt.name} is not implemented`;
    return undefined;
  }
  if (ctx.method === 'GET' && !login) {
    ctx.type = 'html';
    ctx.body = loginPage(uid, { login: details.params.login_hint ?? '' });
    return undefined;
  }
  if (ctx.method === 'POST' && login) {
    const form = await readForm(ctx.req);
    const sub = (form.get('login') ?? '').trim();
    const account = accounts.get(sub);
    if (!account || account.disabled) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(uid, {
        login: sub,
        error: account ? `The account ${sub} is disabled.` : `There is no account ${sub}.`,
      });
      return undefined;
    }
    ctx.respond = false;
    return provider.interactionFinished(ctx.req, ctx.res, {
      login: { accountId: sub, remember: true },
    }, { mergeWithLastSubmission: false });
  }
  ctx.status = 405;
  return undefined;
});

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function control(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/accounts' && req.method === 'GET') {
    return answer(res, 200, [...accounts.values()]);
  }
  if (url.pathname === '/accounts' && req.method === 'POST') {
    const chunks = [];
    for await (const chunk of req) {
      chunks.push(chunk);
    }
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return answer(res, 400, { error: 'the body is not JSON' });
    }
    if (typeof body?.sub !== 'string' || !body.sub) {
      return answer(res, 400, { error: 'sub is required' });
    }
    const account = {
      sub: body.sub,
      preferred_username: body.preferred_username ?? body.sub,
      name: body.name ?? null,
      email: body.email ?? null,
      email_verified: body.email_verified ?? true,
      groups: Array.isArray(body.groups) ? body.groups.map(String) : [],
      disabled: Boolean(body.disabled),
    };
    accounts.set(account.sub, account);
    return answer(res, 200, account);
  }
  const toggle = /^\/accounts\/([^/]+)\/(disable|enable)$/.exec(url.pathname);
  if (toggle && req.method === 'POST') {
    const account = accounts.get(decodeURIComponent(toggle[1]));
    if (!account) {
      return answer(res, 404, { error: 'no such account' });
    }
    account.disabled = toggle[2] === 'disable';
    return answer(res, 200, account);
  }
  return answer(res, 404, { error: 'not found' });
}

const server = http.createServer(provider.callback());
const controlServer = http.createServer((req, res) => {
  control(req, res).catch((error) => answer(res, 500, { error: String(error) }));
});

function listen(target, targetPort) {
  return new Promise((resolve, reject) => {
    target.once('error', reject);
    target.listen(targetPort, '127.0.0.1', resolve);
  });
}

function stop() {
  for (const target of [server, controlServer]) {
    target.close();
    target.closeAllConnections();
  }
  process.exit(0);
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);

try {
  await Promise.all([listen(server, port), listen(controlServer, controlPort)]);
} catch (error) {
  process.stderr.write(`oidc_provider.mjs: ${error.message}\n`);
  process.exit(1);
}
process.stdout.write('ready\n');
