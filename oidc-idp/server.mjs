// meshauth second OpenID Provider (oidc-provider based)
// =====================================================
//
// Why: seed 001's OIDC conformance runs must not depend on one IdP only.
// Keycloak is the first OpenID Provider; this file is the second, independent
// one: the OpenID-certified `oidc-provider` npm package (pinned exactly in
// package.json / package-lock.json), run as a real HTTP server on loopback
// (or behind the mesh gateway) by the Rust harness. It has its own login page
// (no devInteractions), grants consent automatically, serves discovery, JWKS,
// token, userinfo and RP-initiated logout, and keeps all state in memory
// (every start is a fresh IdP; restart = all sessions and codes gone).
//
// Usage:  node server.mjs CONFIG.json
//
// CONFIG.json (written by the harness, mode 0600: it holds secrets):
//   issuer        string, required. http(s) URL without query/fragment and
//                 without a path, e.g. "http://127.0.0.1:47123": the "iss"
//                 of every token and discovery's "issuer" (see Endpoints).
//   host          string, required. Address to listen on, e.g. "127.0.0.1".
//   port          integer 1..65535, required.
//   clients       non-empty array, required. oidc-provider client metadata,
//                 passed through unchanged, e.g.
//                   { "client_id": "rp", "client_secret": "...",
//                     "redirect_uris": ["http://127.0.0.1:4180/oauth2/callback"],
//                     "post_logout_redirect_uris": ["http://127.0.0.1:4180/"],
//                     "grant_types": ["authorization_code"],
//                     "response_types": ["code"],
//                     "token_endpoint_auth_method": "client_secret_basic" }
//                 token_endpoint_auth_method: "client_secret_basic" (the
//                 default) or "client_secret_post"; other methods are off.
//                 oidc-provider accepts either of these two at the token
//                 endpoint whichever one is registered.
//   users         non-empty array, required. Each:
//                   { "sub": "u-1", "username": "alice", "password": "...",
//                     "email": "alice@example.test", "email_verified": true,
//                     "name": "Alice", "groups": ["dev"] }
//                 sub, username, password required (non-empty strings);
//                 sub and username unique.
//   cookie_keys   non-empty array of non-empty strings, required (cookie
//                 signing keys; first one signs, all verify).
//   jwks          optional private JWK Set {"keys": [...]} used for signing
//                 (each key "use": "sig" or no "use"). Absent: an RSA-2048
//                 RS256 key is generated at start (new kid every start).
//   pkce_required optional bool, default true: PKCE (S256 only) is required
//                 for every client. false: PKCE optional (still verified
//                 when a code_challenge was sent).
//   access_token_format  optional "opaque" (default) or "jwt".
//                 "opaque": access tokens are opaque strings that work at
//                 userinfo. "jwt": every authorization request is bound to
//                 `resource` (RFC 8707 resource indicator, defaulted when the
//                 client sends none), and the access token issued at the token
//                 endpoint is an RS256 JWT (typ "at+jwt") with
//                 aud = `audience`; such a token is refused by userinfo
//                 (oidc-provider only accepts audience-less tokens there).
//                 The id_token is always an RS256 JWT with aud = client_id.
//   control_token optional non-empty string: enables POST /meshauth/id-token-fault.
//   resource      absolute URI; required when access_token_format is "jwt".
//   audience      optional string, aud of JWT access tokens; default resource.
//
// Scopes: openid email profile groups. ID token (conformIdTokenClaims: false,
// so RPs see the claims without a userinfo call) and userinfo carry: sub,
// email, email_verified (scope email), name, given_name, family_name (optional, per user),
// preferred_username = username
// (scope profile), groups (scope groups).
//
// Endpoints (oidc-provider defaults): /.well-known/openid-configuration,
// /auth, /token, /me (userinfo), /jwks, /session/end (+ /confirm, /success),
// /request (PAR, on by default); introspection and revocation are off.
// Only response_type "code" and grant type authorization_code are served.
// The `iss` claim and discovery "issuer" are always `issuer`; the endpoint
// URLs in discovery (and the logout form action, the resume redirects) are
// built from the request's Host, or X-Forwarded-Proto/-Host (proxy = true).
// Own routes:
//   GET  /healthz                  200 "ok"
//   POST /meshauth/id-token-fault  (only with control_token in the config, sent as
//                                  "Authorization: Bearer <control_token>") body
//                                  {"fault": F}: from now on every ID token the token
//                                  endpoint issues is made wrong in one way F, to see its
//                                  relying parties refuse it: wrong_nonce, wrong_issuer,
//                                  wrong_audience, expired, alg_none, foreign_key; "none"
//                                  ends it. 204 on success, 400 on an unknown fault, 401
//                                  without the token.
//   GET  /interaction/:uid         login form, or auto-consent (303)
//   POST /interaction/:uid/login   username + password
//   GET  /interaction/:uid/abort   access_denied back to the client
//
// Logging: one line per request on stdout (method, path without query
// string, status, duration); errors on stderr. Never passwords, cookies,
// codes or tokens. Exit codes: 0 on SIGTERM/SIGINT, 1 on runtime/listen
// errors (EADDRINUSE prints "address already in use"), 2 on a bad config.

import {
  createHash, createPrivateKey, createSign, generateKeyPairSync, timingSafeEqual,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const PROG = 'meshauth-oidc-idp';

function fail(code, message) {
  process.stderr.write(`${PROG}: ${message}\n`);
  process.exit(code);
}

function configError(message) {
  fail(2, `bad config: ${message}`);
}

// ---------------------------------------------------------------- config

function isNonEmptyString(v) {
  return typeof v === 'string' && v.length > 0;
}

function loadConfig(path) {
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    configError(`cannot read ${path}: ${err.code || err.message}`);
  }
  let cfg;
  try {
    cfg = JSON.parse(text);
  } catch (err) {
    configError(`${path} is not valid JSON: ${err.message}`);
  }
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) {
    configError(`${path} must hold a JSON object`);
  }

  for (const field of ['issuer', 'host', 'port', 'clients', 'users', 'cookie_keys']) {
    if (cfg[field] === undefined || cfg[field] === null) {
      configError(`missing field "${field}"`);
    }
  }

  if (!isNonEmptyString(cfg.issuer)) configError('"issuer" must be a non-empty string');
  let issuerUrl;
  try {
    issuerUrl = new URL(cfg.issuer);
  } catch {
    configError(`"issuer" is not a URL: ${cfg.issuer}`);
  }
  if (!['http:', 'https:'].includes(issuerUrl.protocol)) {
    configError('"issuer" must be an http:// or https:// URL');
  }
  if (issuerUrl.search || issuerUrl.hash || cfg.issuer.endsWith('?') || cfg.issuer.endsWith('#')) {
    configError('"issuer" must not have a query or fragment');
  }
  if (issuerUrl.pathname !== '/') {
    configError('"issuer" must not have a path (this server serves the provider at /)');
  }
  // oidc-provider compares issuer strings exactly: drop a trailing slash.
  cfg.issuer = cfg.issuer.replace(/\/$/, '');

  if (!isNonEmptyString(cfg.host)) configError('"host" must be a non-empty string');
  if (!Number.isInteger(cfg.port) || cfg.port < 1 || cfg.port > 65535) {
    configError('"port" must be an integer in 1..65535');
  }

  if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) {
    configError('"clients" must be a non-empty array');
  }
  cfg.clients.forEach((c, i) => {
    if (c === null || typeof c !== 'object' || Array.isArray(c)) {
      configError(`clients[${i}] must be an object`);
    }
    if (!isNonEmptyString(c.client_id)) configError(`clients[${i}].client_id must be a non-empty string`);
  });

  if (!Array.isArray(cfg.users) || cfg.users.length === 0) {
    configError('"users" must be a non-empty array');
  }
  const subs = new Set();
  const usernames = new Set();
  cfg.users.forEach((u, i) => {
    if (u === null || typeof u !== 'object' || Array.isArray(u)) {
      configError(`users[${i}] must be an object`);
    }
    for (const f of ['sub', 'username', 'password']) {
      if (!isNonEmptyString(u[f])) configError(`users[${i}].${f} must be a non-empty string`);
    }
    if (u.email !== undefined && typeof u.email !== 'string') configError(`users[${i}].email must be a string`);
    for (const f of ['name', 'given_name', 'family_name']) {
      if (u[f] !== undefined && typeof u[f] !== 'string') configError(`users[${i}].${f} must be a string`);
    }
    if (u.email_verified !== undefined && typeof u.email_verified !== 'boolean') {
      configError(`users[${i}].email_verified must be a boolean`);
    }
    if (u.groups !== undefined
      && (!Array.isArray(u.groups) || !u.groups.every((g) => typeof g === 'string'))) {
      configError(`users[${i}].groups must be an array of strings`);
    }
    if (subs.has(u.sub)) configError(`users[${i}].sub is not unique`);
    if (usernames.has(u.username)) configError(`users[${i}].username is not unique`);
    subs.add(u.sub);
    usernames.add(u.username);
  });

  if (!Array.isArray(cfg.cookie_keys) || cfg.cookie_keys.length === 0
    || !cfg.cookie_keys.every(isNonEmptyString)) {
    configError('"cookie_keys" must be a non-empty array of non-empty strings');
  }

  if (cfg.control_token !== undefined && !isNonEmptyString(cfg.control_token)) {
    configError('"control_token" must be a non-empty string');
  }

  if (cfg.jwks !== undefined) {
    if (cfg.jwks === null || typeof cfg.jwks !== 'object' || !Array.isArray(cfg.jwks.keys)
      || cfg.jwks.keys.length === 0) {
      configError('"jwks" must be a JWK Set object with a non-empty "keys" array');
    }
  }

  if (cfg.pkce_required === undefined) cfg.pkce_required = true;
  if (typeof cfg.pkce_required !== 'boolean') configError('"pkce_required" must be a boolean');

  if (cfg.access_token_format === undefined) cfg.access_token_format = 'opaque';
  if (!['opaque', 'jwt'].includes(cfg.access_token_format)) {
    configError('"access_token_format" must be "opaque" or "jwt"');
  }
  if (cfg.resource !== undefined) {
    let ok = false;
    try {
      const r = new URL(cfg.resource);
      ok = !r.hash && !cfg.resource.includes('#');
    } catch { /* not absolute */ }
    if (!ok) configError('"resource" must be an absolute URI without a fragment');
  }
  if (cfg.access_token_format === 'jwt' && cfg.resource === undefined) {
    configError('access_token_format "jwt" needs "resource" (absolute URI; default aud of the access token)');
  }
  if (cfg.audience !== undefined && !isNonEmptyString(cfg.audience)) {
    configError('"audience" must be a non-empty string');
  }
  return cfg;
}

// ---------------------------------------------------------------- hostile ID tokens

const ID_TOKEN_FAULTS = new Set([
  'none', 'wrong_nonce', 'wrong_issuer', 'wrong_audience', 'expired', 'alg_none', 'foreign_key',
]);

function b64json(value) {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

// `token` (a compact JWS the provider signed) made wrong in one way, and signed again with
// `signingJwk` (its own key: only the claim is wrong) unless the fault is the signature.
function forgeIdToken(token, fault, signingJwk) {
  const [h, p] = token.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  const now = Math.floor(Date.now() / 1000);
  let key = createPrivateKey({ key: signingJwk, format: 'jwk' });
  switch (fault) {
    case 'wrong_nonce': payload.nonce = 'meshauth-forged-nonce'; break;
    case 'wrong_issuer': payload.iss = 'https://issuer.evil.example'; break;
    case 'wrong_audience': payload.aud = 'another-client'; break;
    case 'expired': payload.iat = now - 7200; payload.exp = now - 3600; break;
    case 'foreign_key': key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey; break;
    case 'alg_none': {
      const unsigned = `${b64json({ ...header, alg: 'none' })}.${b64json(payload)}`;
      return `${unsigned}.`;
    }
    default: break;
  }
  const input = `${b64json(header)}.${b64json(payload)}`;
  const signature = createSign('RSA-SHA256').update(input).sign(key).toString('base64url');
  return `${input}.${signature}`;
}

function generatedJwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  // RFC 7638 thumbprint as kid.
  const canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  const kid = createHash('sha256').update(canonical).digest('base64url');
  return { keys: [{ ...jwk, kid, use: 'sig', alg: 'RS256' }] };
}

// ---------------------------------------------------------------- helpers

function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
</head>
<body>
${body}
</body>
</html>
`;
}

function sameSecret(given, expected) {
  // Compare digests so neither length nor content leaks through timing.
  const a = createHash('sha256').update(String(given)).digest();
  const b = createHash('sha256').update(String(expected)).digest();
  return timingSafeEqual(a, b);
}

const MAX_FORM_BYTES = 16 * 1024;

async function readBody(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) ctx.throw(413, 'body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(ctx) {
  const type = ctx.get('content-type') || '';
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    ctx.throw(415, 'expected application/x-www-form-urlencoded');
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) ctx.throw(413, 'form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function loginForm(uid, { username = '', error } = {}) {
  const action = `/interaction/${encodeURIComponent(uid)}/login`;
  return page('Sign in', `<h1>Sign in</h1>
${error ? `<p id="idp-error">${esc(error)}</p>\n` : ''}<form id="idp-login" method="post" action="${esc(action)}">
<label>Username <input name="username" type="text" autocomplete="username" value="${esc(username)}" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit" id="idp-submit">Sign in</button>
</form>`);
}

// Claims per scope; ID token and userinfo share it.
const CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username'],
  groups: ['groups'],
};

function accountClaims(user) {
  const claims = { sub: user.sub, preferred_username: user.username };
  if (user.email !== undefined) claims.email = user.email;
  if (user.email_verified !== undefined) claims.email_verified = user.email_verified;
  for (const f of ['name', 'given_name', 'family_name']) {
    if (user[f] !== undefined) claims[f] = user[f];
  }
  claims.groups = user.groups ?? [];
  return claims;
}

// ---------------------------------------------------------------- main

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1 || args[0] === '-h' || args[0] === '--help') {
    fail(2, 'usage: node server.mjs CONFIG.json');
  }
  const cfg = loadConfig(args[0]);

  const usersBySub = new Map(cfg.users.map((u) => [u.sub, u]));
  const usersByName = new Map(cfg.users.map((u) => [u.username, u]));
  const audience = cfg.audience ?? cfg.resource;
  const jwtAccessTokens = cfg.access_token_format === 'jwt';

  const configuration = {
    clients: cfg.clients,
    jwks: cfg.jwks ?? generatedJwks(),
    cookies: { keys: cfg.cookie_keys },
    scopes: ['openid', 'email', 'profile', 'groups'],
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    claims: CLAIMS,
    conformIdTokenClaims: false,
    pkce: { required: () => cfg.pkce_required },
    // Same values as oidc-provider's defaults; spelled out only to silence
    // its "you SHOULD change it" notices.
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || 60 * 60,
      AuthorizationCode: 60,
      IdToken: 60 * 60,
      Interaction: 60 * 60,
      Session: 14 * 24 * 60 * 60,
      Grant: 14 * 24 * 60 * 60,
    },
    async findAccount(ctx, sub) {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        // oidc-provider filters these by granted scope / requested claims.
        async claims() {
          return accountClaims(user);
        },
      };
    },
    async extraTokenClaims(ctx, token) {
      // Only JWT access tokens (bound to the resource server) get user claims.
      if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
      const user = usersBySub.get(token.accountId);
      if (!user) return undefined;
      const all = accountClaims(user);
      const scopes = new Set(String(token.scope || '').split(' '));
      const extra = {};
      for (const [scope, names] of Object.entries(CLAIMS)) {
        if (scope === 'openid' || !scopes.has(scope)) continue;
        for (const n of names) if (all[n] !== undefined) extra[n] = all[n];
      }
      return extra;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      const rows = Object.entries(out)
        .map(([k, v]) => `<p class="oauth-${esc(k)}"><strong>${esc(k)}</strong>: ${esc(v)}</p>`)
        .join('\n');
      ctx.body = page('Error', `<h1>Error</h1>\n${rows}`);
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          // `form` is oidc-provider's
          //   <form id="op.logoutForm" method="post" action="/session/end/confirm">
          //   <input type="hidden" name="xsrf" value="..."/></form>
          // Put logout=yes and a submit button inside it, so a client without
          // JavaScript POSTs the form as is; browsers submit it right away.
          const inner = '<input type="hidden" name="logout" value="yes"/>'
            + '<button type="submit" id="idp-logout-submit">Sign out</button></form>';
          const idx = form.lastIndexOf('</form>');
          const full = idx === -1 ? form : `${form.slice(0, idx)}${inner}${form.slice(idx + 7)}`;
          ctx.body = page('Sign out', `<h1>Signing out</h1>
${full}
<script>document.getElementById('op.logoutForm').submit();</script>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<h1>Signed out</h1>\n<p id="idp-logged-out">You are signed out.</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        async defaultResource(ctx, client, oneOf) {
          if (oneOf) return oneOf;
          return jwtAccessTokens ? cfg.resource : undefined;
        },
        async useGrantedResource() {
          return jwtAccessTokens;
        },
        async getResourceServerInfo(ctx, resourceIndicator) {
          if (jwtAccessTokens && resourceIndicator === cfg.resource) {
            return {
              scope: 'openid email profile groups',
              audience,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          throw new Provider.errors.InvalidTarget();
        },
      },
    },
  };

  let provider;
  try {
    provider = new Provider(cfg.issuer, configuration);
  } catch (err) {
    configError(`oidc-provider refused the configuration: ${err.error_description || err.message}`);
  }
  // Static clients are validated lazily; validate them now to fail fast.
  for (const c of cfg.clients) {
    try {
      await provider.Client.find(c.client_id);
    } catch (err) {
      configError(`client "${c.client_id}": ${err.error_description || err.message}`);
    }
  }
  provider.proxy = true;

  // Errors go to stderr; OAuth error codes and descriptions only.
  const errorEvents = [
    'server_error', 'authorization.error', 'backchannel.error',
    'backchannel_authentication.error', 'challenge.error', 'code_verification.error',
    'credential.error', 'device_authorization.error', 'device_resume.error',
    'discovery.error', 'end_session.error', 'end_session_confirm.error',
    'end_session_success.error', 'grant.error', 'introspection.error', 'jwks.error',
    'openid_credential_issuer.error', 'pushed_authorization_request.error',
    'registration_create.error', 'registration_delete.error', 'registration_read.error',
    'registration_update.error', 'revocation.error', 'userinfo.error',
  ];
  for (const event of errorEvents) {
    provider.on(event, (ctx, err) => {
      let what;
      if (err?.error) {
        // error_detail and cause messages are fixed strings from
        // oidc-provider (e.g. "code_verifier does not match code_challenge").
        const detail = [...new Set([err.error_detail, err.cause?.message].filter(Boolean))].join('; ');
        what = `${err.error}: ${err.error_description ?? ''}${detail ? ` (${detail})` : ''}`;
      } else {
        what = err?.stack || String(err);
      }
      process.stderr.write(`${new Date().toISOString()} ${event} ${ctx?.method ?? ''} ${ctx?.path ?? ''} ${what}\n`);
    });
  }
  provider.on('error', (err, ctx) => {
    process.stderr.write(`${new Date().toISOString()} error ${ctx?.method ?? ''} ${ctx?.path ?? ''} ${err?.stack || err}\n`);
  });

  // 1. Access log: method, path (no query string), status, duration.
  provider.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      process.stdout.write(`${new Date().toISOString()} ${ctx.method} ${ctx.path} ${ctx.status} ${ms.toFixed(1)}ms\n`);
    }
  });

  // 2. Readiness.
  provider.use(async (ctx, next) => {
    if (ctx.path === '/healthz' && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      ctx.set('cache-control', 'no-store');
      ctx.type = 'text/plain';
      ctx.body = 'ok';
      return;
    }
    await next();
  });

  // 2b. Hostile ID tokens, on the harness's request (the fault-injection route), and the
  //     token endpoint's answers made wrong while one is set.
  let idTokenFault = 'none';
  const signingJwk = configuration.jwks.keys[0];
  provider.use(async (ctx, next) => {
    if (ctx.path === '/meshauth/id-token-fault' && cfg.control_token) {
      if (ctx.method !== 'POST') ctx.throw(405);
      const sent = (ctx.get('authorization') || '').replace(/^Bearer /, '');
      if (!sameSecret(sent, cfg.control_token)) ctx.throw(401);
      let body;
      try {
        body = JSON.parse(await readBody(ctx));
      } catch {
        ctx.throw(400, 'the body must be JSON {"fault": ...}');
      }
      if (!ID_TOKEN_FAULTS.has(body?.fault)) ctx.throw(400, `unknown fault ${body?.fault}`);
      idTokenFault = body.fault;
      process.stdout.write(`${new Date().toISOString()} id token fault: ${idTokenFault}\n`);
      ctx.status = 204;
      return;
    }
    await next();
    if (ctx.path === '/token' && idTokenFault !== 'none' && typeof ctx.body?.id_token === 'string') {
      ctx.body = { ...ctx.body, id_token: forgeIdToken(ctx.body.id_token, idTokenFault, signingJwk) };
    }
  });

  // 3. Interactions: own login page, automatic consent.
  const interactionPath = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/;
  provider.use(async (ctx, next) => {
    const m = interactionPath.exec(ctx.path);
    if (!m) {
      await next();
      return;
    }
    const [, uid, action] = m;
    ctx.set('cache-control', 'no-store');
    ctx.set('x-frame-options', 'DENY');
    try {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.uid !== uid) ctx.throw(400, 'interaction does not match this browser session');
      const { prompt, params, session } = details;

      const finish = async (result, merge) => {
        const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
          mergeWithLastSubmission: merge,
        });
        ctx.status = 303;
        ctx.redirect(returnTo);
      };

      if (action === undefined && ctx.method === 'GET') {
        if (prompt.name === 'login') {
          ctx.type = 'html';
          ctx.body = loginForm(uid);
          return;
        }
        if (prompt.name === 'consent') {
          // No consent page: grant what was asked for this client.
          const grant = details.grantId
            ? await provider.Grant.find(details.grantId)
            : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
          const d = prompt.details;
          if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
          if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
          if (d.missingResourceScopes) {
            for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
              grant.addResourceScope(indicator, scopes.join(' '));
            }
          }
          const grantId = await grant.save();
          await finish({ consent: { grantId } }, true);
          return;
        }
        ctx.throw(501, `unsupported prompt ${prompt.name}`);
      }

      if (action === 'login' && ctx.method === 'POST') {
        if (prompt.name !== 'login') ctx.throw(400, 'this interaction does not ask for a login');
        const form = await readForm(ctx);
        const username = form.get('username') ?? '';
        const password = form.get('password') ?? '';
        const user = usersByName.get(username);
        // Compare against something even for unknown users (timing).
        const ok = sameSecret(password, user ? user.password : '\u0000no-such-user') && !!user;
        if (!ok) {
          ctx.status = 200;
          ctx.type = 'html';
          ctx.body = loginForm(uid, { username, error: 'Invalid username or password.' });
          return;
        }
        await finish({ login: { accountId: user.sub } }, false);
        return;
      }

      if (action === 'abort' && ctx.method === 'GET') {
        await finish({ error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
        return;
      }

      ctx.throw(405, 'method not allowed');
    } catch (err) {
      const status = err.statusCode || err.status || 500;
      if (status >= 500) {
        process.stderr.write(`${new Date().toISOString()} interaction error ${ctx.method} ${ctx.path} ${err.stack || err}\n`);
      }
      ctx.status = status;
      ctx.type = 'html';
      const message = err.error_description || err.message || 'error';
      ctx.body = page('Error', `<h1>Error</h1>\n<p id="idp-interaction-error">${esc(err.error || 'error')}: ${esc(message)}</p>`);
    }
  });

  const server = createServer(provider.callback());
  server.on('error', (err) => {
    if (err.code === 'EADDRINUSE') {
      fail(1, `cannot listen on ${cfg.host}:${cfg.port}: address already in use`);
    }
    fail(1, `cannot listen on ${cfg.host}:${cfg.port}: ${err.code || ''} ${err.message}`);
  });

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${PROG}: ${signal}, shutting down\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  server.listen(cfg.port, cfg.host, () => {
    const kids = (configuration.jwks.keys || []).map((k) => k.kid).filter(Boolean).join(',');
    process.stdout.write(`${PROG}: listening on ${cfg.host}:${cfg.port} issuer=${cfg.issuer} `
      + `clients=${cfg.clients.length} users=${cfg.users.length} pkce_required=${cfg.pkce_required} `
      + `access_token_format=${cfg.access_token_format}${kids ? ` kids=${kids}` : ''}\n`);
  });
}

main().catch((err) => fail(1, err?.stack || String(err)));
