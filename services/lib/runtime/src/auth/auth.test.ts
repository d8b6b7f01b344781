// Principals over real gRPC: a real GrpcServer with the auth interceptor serving JobService (researcher or
// operator) and PolicyService (service only), real clients with bearer tokens; a tokens file and a JWKS
// file rewritten on disk while the server runs (rotation without restart); a JWKS served by a local HTTP
// server; JWTs signed in the test with keys jose generates (expired, wrong audience or issuer, bad
// signature, unknown key: all UNAUTHENTICATED with a clear message).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';

import * as jose from 'jose';

import {
  JobServiceClient,
  JobServiceService,
  JobState,
  PolicyServiceClient,
  PolicyServiceService,
  type GetJobRequest,
  type GetJobResponse,
  type GetPolicyRequest,
  type GetPolicyResponse,
} from '@spark/protocol';

import { createLogger } from '../logging/index.js';
import { until } from '../testing/index.js';
import {
  callUnary,
  checkHealth,
  clientSetup,
  grpc,
  GrpcServer,
  principalOf,
  serverStreamHandler,
  unaryHandler,
} from '../grpc/index.js';
import { Authenticator, parseTokensFile, rolesFor, type AuthenticatorOptions } from './index.js';

const silent = createLogger({
  service: 'auth-test',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});
const dir = mkdtempSync(join(tmpdir(), 'spark-auth-'));

/** A server whose GetJob answers with the caller's principal (owner = name, message = roles). */
async function serve(auth: AuthenticatorOptions | null): Promise<{ server: GrpcServer; address: string }> {
  const server = new GrpcServer({
    service: 'auth-test',
    logger: silent,
    authenticator: auth ? new Authenticator({ logger: silent, ...auth }) : null,
    maxMessageBytes: 1024 * 1024,
    reflectionProtos: ['spark/v1/job.proto'],
  });
  server.addService(
    JobServiceService,
    {
      getJob: unaryHandler<GetJobRequest, GetJobResponse>(silent, async (req, call) => {
        const p = principalOf(call);
        return {
          status: {
            jobId: req.jobId,
            spec: undefined,
            state: JobState.JOB_STATE_QUEUED,
            step: 0,
            policyVersion: 0,
            message: p.roles.join(','),
            createdAtMs: 0,
            updatedAtMs: 0,
            owner: p.name,
          },
        };
      }),
    },
    'spark.v1.JobService',
    { '/spark.v1.JobService/': ['researcher', 'operator'] },
  );
  server.addService(
    PolicyServiceService,
    {
      getPolicy: serverStreamHandler<GetPolicyRequest, GetPolicyResponse>(silent, async () => {}),
    },
    'spark.v1.PolicyService',
    { '/spark.v1.PolicyService/': ['service'] },
  );
  const port = await server.listen('127.0.0.1', 0);
  return { server, address: `127.0.0.1:${port}` };
}

/** GetJob as `token`: resolves to "name roles", rejects with the ServiceError. */
async function whoAmI(address: string, token: string | null): Promise<string> {
  const s = clientSetup({ token, defaultDeadlineMs: 5_000 });
  const c = new JobServiceClient(address, s.credentials, s.options);
  try {
    const res = await callUnary(c.getJob.bind(c), { jobId: 'job-1' });
    return `${res.status?.owner} ${res.status?.message}`;
  } finally {
    c.close();
  }
}

/** Reads PolicyService.GetPolicy to its end as `token`; resolves when the stream ends OK. */
async function readPolicy(address: string, token: string | null): Promise<void> {
  const s = clientSetup({ token, defaultDeadlineMs: 5_000 });
  const c = new PolicyServiceClient(address, s.credentials, s.options);
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = c.getPolicy({ jobId: 'job-1', version: 1 });
      stream.on('data', () => {});
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
  } finally {
    c.close();
  }
}

async function refused(p: Promise<unknown>, code: grpc.status, details: RegExp): Promise<void> {
  await assert.rejects(p, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `${grpc.status[err.code]}: ${err.details}`);
    assert.match(err.details, details);
    return true;
  });
}

const T = {
  alice1: 'alice-token-one-0123456789',
  alice2: 'alice-token-two-0123456789',
  alice3: 'alice-token-three-0123456789',
  ops: 'operator-token-0123456789',
  svc: 'service-token-0123456789ab',
};

function tokensYaml(aliceTokens: string[]): string {
  return [
    'principals:',
    '  - name: alice',
    '    roles: [researcher]',
    `    tokens: [${aliceTokens.map((t) => JSON.stringify(t)).join(', ')}]`,
    '  - name: ops',
    '    roles: [operator]',
    // a hashed entry: the file need not hold the operator's token itself
    `    tokens: ["sha256:${createHash('sha256').update(T.ops).digest('hex')}"]`,
    '  - name: rollout',
    '    roles: [service]',
    `    tokens: [${JSON.stringify(T.svc)}]`,
    '',
  ].join('\n');
}

describe('tokens file: principals, roles, rotation without restart', () => {
  const file = join(dir, 'tokens.yaml');
  let server: GrpcServer;
  let address = '';

  before(async () => {
    writeFileSync(file, tokensYaml([T.alice1, T.alice2]));
    ({ server, address } = await serve({ tokensFile: file, reloadMs: 50 }));
  });
  after(() => server.shutdown(1_000));

  it('maps each token to its principal; two tokens of one principal are valid at once', async () => {
    assert.equal(await whoAmI(address, T.alice1), 'alice researcher');
    assert.equal(await whoAmI(address, T.alice2), 'alice researcher');
    assert.equal(await whoAmI(address, T.ops), 'ops operator', 'a sha256: entry matches its token');
    assert.equal(await checkHealth(address, { token: null, defaultDeadlineMs: 2_000 }), 'SERVING');
  });

  it('refuses a missing or unknown token with UNAUTHENTICATED', async () => {
    await refused(whoAmI(address, null), grpc.status.UNAUTHENTICATED, /missing bearer token/);
    await refused(
      whoAmI(address, 'not-a-token-of-this-cluster'),
      grpc.status.UNAUTHENTICATED,
      /invalid bearer token: not a known token/,
    );
  });

  it('needs the service role for the weight stream and refuses others with PERMISSION_DENIED', async () => {
    await readPolicy(address, T.svc);
    await refused(
      readPolicy(address, T.alice1),
      grpc.status.PERMISSION_DENIED,
      /spark\.v1\.PolicyService\/GetPolicy needs role service; alice has researcher/,
    );
    await refused(readPolicy(address, T.ops), grpc.status.PERMISSION_DENIED, /needs role service/);
    await refused(
      whoAmI(address, T.svc),
      grpc.status.PERMISSION_DENIED,
      /spark\.v1\.JobService\/GetJob needs role researcher or operator; rollout has service/,
    );
  });

  it('re-reads the file when it changes: a retired token stops working, a new one starts', async () => {
    writeFileSync(file, tokensYaml([T.alice2, T.alice3]));
    await until(async () => (await whoAmI(address, T.alice3).catch(() => '')) === 'alice researcher', {
      timeoutMs: 5_000,
    });
    assert.equal(await whoAmI(address, T.alice2), 'alice researcher', 'the other token stays valid');
    await refused(whoAmI(address, T.alice1), grpc.status.UNAUTHENTICATED, /not a known token/);
  });

  it('keeps the last good content when the file is rewritten invalid', async () => {
    const auth = server.authenticator!;
    const before = auth.tokensReloadCount;
    writeFileSync(file, 'principals:\n  - name: alice\n    roles: [root]\n    tokens: [short]\n');
    auth.reloadNow();
    assert.equal(auth.tokensReloadCount, before);
    assert.equal(await whoAmI(address, T.alice3), 'alice researcher');
    writeFileSync(file, tokensYaml([T.alice2, T.alice3]));
  });
});

describe('tokens file validation', () => {
  it('lists every problem: unknown role, short token, duplicate token, duplicate principal', () => {
    const text = JSON.stringify({
      principals: [
        { name: 'a', roles: ['root'], tokens: ['short'] },
        { name: 'b', roles: ['researcher'], tokens: ['same-token-0123456789'] },
        { name: 'b', roles: ['operator'], tokens: ['same-token-0123456789'] },
      ],
    });
    assert.throws(
      () => parseTokensFile(text, 't.json'),
      (err: Error & { problems: string[] }) => {
        const all = err.problems.join('\n');
        assert.match(all, /principals\.0\.roles\.0/);
        assert.match(all, /principals\.0\.tokens\.0: a token of at least 16 characters/);
        return true;
      },
    );
    const dup = JSON.stringify({
      principals: [
        { name: 'b', roles: ['researcher'], tokens: ['same-token-0123456789'] },
        { name: 'b', roles: ['operator'], tokens: ['same-token-0123456789'] },
      ],
    });
    assert.throws(
      () => parseTokensFile(dup, 't.json'),
      (err: Error & { problems: string[] }) => {
        const all = err.problems.join('\n');
        assert.match(all, /principal b is listed twice/);
        assert.match(all, /a token of b is also a token of b/);
        return true;
      },
    );
  });

  it('refuses to start on a tokens file that cannot be read, naming it', () => {
    assert.throws(
      () => new Authenticator({ tokensFile: join(dir, 'no-such-tokens.yaml') }),
      (err: Error & { problems: string[] }) => {
        assert.match(err.problems.join('\n'), /no-such-tokens\.yaml: cannot read \(ENOENT\)/);
        return true;
      },
    );
  });

  it('with mTLS as the only source, the verified certificate is the principal and a token is not looked at', async () => {
    const auth = new Authenticator({ mtls: true });
    const peer = { transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: 'rollout 1' } } };
    const p = await auth.authenticate('a-token-that-is-not-checked', peer);
    assert.deepEqual([p.name, p.roles, p.via], ['mtls:rollout_1', ['operator', 'service'], 'mtls']);
    await assert.rejects(auth.authenticate(null, {}), /no verified client certificate/);
  });

  it("a certificate's organisation (O) values that name roles are its roles", async () => {
    const auth = new Authenticator({ mtls: true });
    const as = async (O: string | string[]) =>
      (await auth.authenticate(null, { transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN: 'alice', O } } }))
        .roles; // prettier-ignore
    assert.deepEqual(await as('researcher'), ['researcher']);
    assert.deepEqual(await as(['service', 'acme', 'operator']), ['operator', 'service']);
    assert.deepEqual(await as('acme'), ['operator', 'service'], 'no role named: the default');
  });

  it('gives reflection to every principal and unmapped services to operator or service', () => {
    assert.equal(rolesFor('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', {}), null);
    assert.deepEqual(rolesFor('/x.Y/Z', {}), ['operator', 'service']);
    assert.deepEqual(rolesFor('/x.Y/Z', { '/x.Y/': ['researcher'], '/x.Y/Z': ['service'] }), ['service']);
  });
});

const ISSUER = 'https://idp.test.example';
const AUDIENCE = 'spark';

interface Key {
  readonly kid: string;
  readonly privateKey: jose.CryptoKey;
  readonly jwk: jose.JWK;
}

async function newKey(kid: string): Promise<Key> {
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await jose.exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return { kid, privateKey, jwk };
}

async function jwt(
  key: Key,
  claims: Record<string, unknown>,
  opts: { audience?: string; issuer?: string; exp?: string | number; kid?: string } = {},
): Promise<string> {
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? key.kid })
    .setIssuer(opts.issuer ?? ISSUER)
    .setAudience(opts.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(opts.exp ?? '5m')
    .sign(key.privateKey);
}

const jwtSettings = { issuer: ISSUER, audience: AUDIENCE, rolesClaim: 'realm.roles', nameClaim: 'sub' };

describe('OIDC/JWT bearer tokens verified against a JWKS file', () => {
  const file = join(dir, 'jwks.json');
  let server: GrpcServer;
  let address = '';
  let a: Key;
  let b: Key;
  let c: Key;

  before(async () => {
    [a, b, c] = await Promise.all([newKey('key-a'), newKey('key-b'), newKey('key-c')]);
    writeFileSync(file, JSON.stringify({ keys: [a.jwk, b.jwk] }));
    ({ server, address } = await serve({ jwt: { ...jwtSettings, jwksFile: file }, reloadMs: 50 }));
  });
  after(() => server.shutdown(1_000));

  it('accepts tokens signed by either of two keys and takes name and roles from the claims', async () => {
    const researcher = { sub: 'bob', realm: { roles: ['researcher', 'unrelated-role'] } };
    assert.equal(await whoAmI(address, await jwt(a, researcher)), 'bob researcher');
    assert.equal(await whoAmI(address, await jwt(b, researcher)), 'bob researcher');
    const svc = await jwt(a, { sub: 'rollout', realm: { roles: 'service' } });
    await readPolicy(address, svc);
    await refused(
      readPolicy(address, await jwt(a, researcher)),
      grpc.status.PERMISSION_DENIED,
      /needs role service; bob has researcher/,
    );
    await refused(
      whoAmI(address, await jwt(a, { sub: 'carol' })),
      grpc.status.PERMISSION_DENIED,
      /GetJob needs role researcher or operator; carol has no role/,
    );
  });

  it('refuses expired, wrong-audience, wrong-issuer, badly signed and unknown-key tokens', async () => {
    const claims = { sub: 'bob', realm: { roles: ['researcher'] } };
    const now = Math.floor(Date.now() / 1000);
    const cases: [Promise<string>, RegExp][] = [
      [jwt(a, claims, { exp: now - 120 }), /^JWT expired$/],
      [jwt(a, claims, { audience: 'another-service' }), /^JWT audience is not spark$/],
      [
        jwt(a, claims, { issuer: 'https://evil.example' }),
        /^JWT issuer is not https:\/\/idp\.test\.example$/,
      ],
      // signed with key c but claiming key a's id
      [jwt(c, claims, { kid: 'key-a' }), /^JWT signature invalid$/],
      [jwt(c, claims), /^JWT signed by a key not in the JWKS$/],
      [jwt(a, { realm: { roles: ['researcher'] } }), /^JWT claim sub must be a string/],
    ];
    for (const [token, msg] of cases) {
      await refused(whoAmI(address, await token), grpc.status.UNAUTHENTICATED, msg);
    }
    const good = await jwt(a, claims);
    const [h, p, s] = good.split('.');
    const tampered = `${h}.${p}.${s!.slice(0, -4)}AAAA`;
    await refused(whoAmI(address, tampered), grpc.status.UNAUTHENTICATED, /JWT signature invalid/);
  });

  it('re-reads the JWKS file: a removed key stops verifying, a new one starts', async () => {
    const claims = { sub: 'bob', realm: { roles: ['researcher'] } };
    writeFileSync(file, JSON.stringify({ keys: [b.jwk, c.jwk] }));
    await until(async () => (await whoAmI(address, await jwt(c, claims)).catch(() => '')) !== '', {
      timeoutMs: 5_000,
    });
    await refused(whoAmI(address, await jwt(a, claims)), grpc.status.UNAUTHENTICATED, /not in the JWKS/);
    assert.equal(await whoAmI(address, await jwt(b, claims)), 'bob researcher');
  });
});

describe('OIDC/JWT bearer tokens verified against a JWKS URL', () => {
  let http: Server;
  let server: GrpcServer;
  let address = '';
  let key: Key;
  let fetches = 0;
  let jwksBase = '';

  before(async () => {
    key = await newKey('url-key');
    http = createServer((req, res) => {
      fetches++;
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] }));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    jwksBase = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    ({ server, address } = await serve({
      jwt: { ...jwtSettings, jwksUrl: `${jwksBase}/.well-known/jwks.json` },
    }));
  });
  after(async () => {
    await server.shutdown(1_000);
    await new Promise<void>((r) => http.close(() => r()));
  });

  it('fetches the JWKS and verifies tokens with it; an unreachable JWKS is UNAVAILABLE', async () => {
    const token = await jwt(key, { sub: 'dana', realm: { roles: ['operator'] } });
    assert.equal(await whoAmI(address, token), 'dana operator');
    assert.ok(fetches >= 1, 'the JWKS was fetched over HTTP');
    await refused(
      whoAmI(address, await jwt(key, { sub: 'dana' }, { audience: 'other' })),
      grpc.status.UNAUTHENTICATED,
      /JWT audience is not spark/,
    );
    // no JWKS to be had (404; nothing listening): UNAVAILABLE, the identity provider's fault, not the caller's
    const anyToken = await jwt(key, { sub: 'dana', realm: { roles: ['operator'] } });
    for (const url of [`${jwksBase}/missing.json`, 'http://127.0.0.1:1/jwks.json']) {
      const other = await serve({ jwt: { ...jwtSettings, jwksUrl: url } });
      try {
        await refused(
          whoAmI(other.address, anyToken),
          grpc.status.UNAVAILABLE,
          /cannot verify JWTs now: the JWKS could not be fetched/,
        );
      } finally {
        await other.server.shutdown(1_000);
      }
    }
    // a plain token is not a JWT: refused without a tokens file
    await refused(whoAmI(address, 'plain-token-0123456789abc'), grpc.status.UNAUTHENTICATED, /not a JWT/);
  });
});

describe('the shared token (back-compat) and local mode', () => {
  it('the shared token is the principal shared-token with operator and service', async () => {
    const token = 'shared-token-0123456789abcdef';
    const { server, address } = await serve({ sharedToken: token });
    try {
      assert.equal(await whoAmI(address, token), 'shared-token operator,service');
      await readPolicy(address, token);
      await refused(whoAmI(address, 'x'.repeat(30)), grpc.status.UNAUTHENTICATED, /invalid bearer token/);
    } finally {
      await server.shutdown(1_000);
    }
  });

  it('without an authenticator every call is the local principal', async () => {
    const { server, address } = await serve(null);
    try {
      assert.equal(await whoAmI(address, null), 'local researcher,operator,service');
    } finally {
      await server.shutdown(1_000);
    }
  });

  it('a tokens file, a JWKS and the shared token work side by side', async () => {
    const file = join(dir, 'side-by-side.yaml');
    writeFileSync(file, tokensYaml([T.alice1]));
    const jwks = join(dir, 'side-by-side-jwks.json');
    const k = await newKey('k');
    writeFileSync(jwks, JSON.stringify({ keys: [k.jwk] }));
    const shared = 'shared-token-0123456789abcdef';
    const { server, address } = await serve({
      sharedToken: shared,
      tokensFile: file,
      jwt: { ...jwtSettings, jwksFile: jwks },
    });
    try {
      assert.equal(await whoAmI(address, T.alice1), 'alice researcher');
      assert.equal(await whoAmI(address, shared), 'shared-token operator,service');
      const token = await jwt(k, { sub: 'erin', realm: { roles: ['researcher'] } });
      assert.equal(await whoAmI(address, token), 'erin researcher');
    } finally {
      await server.shutdown(1_000);
    }
  });
});
