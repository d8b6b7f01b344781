import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ConfigError } from '../errors/index.js';
import {
  assertServerSecurity,
  baseServiceShape,
  configWithDefaults,
  envKeyOf,
  loadConfig,
  z,
} from './index.js';

const shape = {
  ...baseServiceShape,
  workers: z.number().int().min(1).max(64).default(2),
  tags: z.array(z.string()).default([]),
};

describe('config', () => {
  it('maps camelCase keys to SPARK_ environment names', () => {
    assert.equal(envKeyOf('grpcPort'), 'GRPC_PORT');
    assert.equal(envKeyOf('grpcMaxMessageBytes'), 'GRPC_MAX_MESSAGE_BYTES');
  });

  it('applies defaults, then the file, then the environment, and freezes the result', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-cfg-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'workers: 4\ngrpcPort: 7000\nlogLevel: debug\n');
    const cfg = loadConfig('svc', shape, {
      env: { SPARK_CONFIG_FILE: file, SPARK_GRPC_PORT: '7100', SPARK_LOCAL_MODE: 'true', SPARK_TAGS: 'a, b' },
    });
    assert.equal(cfg.workers, 4);
    assert.equal(cfg.grpcPort, 7100);
    assert.equal(cfg.logLevel, 'debug');
    assert.equal(cfg.localMode, true);
    assert.deepEqual(cfg.tags, ['a', 'b']);
    assert.equal(cfg.metricsPort, 0);
    assert.ok(Object.isFrozen(cfg));
  });

  it('reads REDIS_URL when SPARK_REDIS_URL is absent', () => {
    const cfg = loadConfig('svc', shape, { env: { REDIS_URL: 'redis://h:1' } });
    assert.equal(cfg.redisUrl, 'redis://h:1');
  });

  it('reports every invalid key at once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-cfg-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ workers: 0, bogus: 1 }));
    let caught: unknown;
    try {
      loadConfig('svc', shape, {
        env: {
          SPARK_CONFIG_FILE: file,
          SPARK_GRPC_PORT: 'abc',
          SPARK_LOG_LEVEL: 'loud',
          SPARK_LOCAL_MODE: 'maybe',
        },
      });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof ConfigError);
    const text = caught.problems.join('\n');
    assert.match(text, /unknown key "bogus"/);
    assert.match(text, /workers/);
    assert.match(text, /grpcPort \(SPARK_GRPC_PORT\)/);
    assert.match(text, /logLevel \(SPARK_LOG_LEVEL\)/);
    assert.match(text, /localMode \(SPARK_LOCAL_MODE\)/);
    assert.equal(caught.problems.length, 5);
  });

  it('reports an unreadable or malformed file', () => {
    assert.throws(
      () => loadConfig('svc', shape, { file: '/nonexistent/spark.yaml' }),
      /config file \/nonexistent\/spark.yaml/,
    );
    const dir = mkdtempSync(join(tmpdir(), 'spark-cfg-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, '- just\n- a list\n');
    assert.throws(() => loadConfig('svc', shape, { file }), /top level must be a mapping/);
  });

  it('exits non-zero with every problem on stderr through loadConfigOrExit', async () => {
    const { spawnSync } = await import('node:child_process');
    const script = `import { loadConfigOrExit, baseServiceShape } from './services/lib/runtime/src/config/index.ts'; loadConfigOrExit('coordinator', baseServiceShape); console.log('unreachable');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '../../../../..'),
      env: { ...process.env, SPARK_GRPC_PORT: '99999', SPARK_METRICS_PORT: 'x' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /invalid configuration for coordinator/);
    assert.match(r.stderr, /grpcPort/);
    assert.match(r.stderr, /metricsPort/);
    assert.doesNotMatch(r.stdout, /unreachable/);
  });

  it('builds a frozen config from defaults and overrides, refusing unknown keys', () => {
    const cfg = configWithDefaults(shape, { workers: 8 });
    assert.equal(cfg.workers, 8);
    assert.equal(cfg.grpcHost, '127.0.0.1');
    assert.ok(Object.isFrozen(cfg));
    assert.throws(() => configWithDefaults(shape, { workers: 0 }));
    assert.throws(() => configWithDefaults(shape, { nope: 1 } as never));
  });

  it('requires a token or mTLS outside local mode', () => {
    const base = { localMode: false, authToken: '', tlsCaFile: '', tlsCertFile: '', tlsKeyFile: '' };
    assert.throws(() => assertServerSecurity(base), /authToken/);
    assert.throws(() => assertServerSecurity({ ...base, authToken: 'short' }), /at least 16/);
    assert.doesNotThrow(() => assertServerSecurity({ ...base, authToken: 'a'.repeat(32) }));
    assert.doesNotThrow(() => assertServerSecurity({ ...base, localMode: true }));
  });

  it('accepts a tokens file or a JWKS instead, and checks the JWT settings', () => {
    const base = { localMode: false, authToken: '', tlsCaFile: '', tlsCertFile: '', tlsKeyFile: '' };
    assert.doesNotThrow(() => assertServerSecurity({ ...base, authTokensFile: '/etc/spark/tokens.yaml' }));
    const jwt = { authJwtIssuer: 'https://idp', authJwtAudience: 'spark' };
    assert.doesNotThrow(() => assertServerSecurity({ ...base, ...jwt, authJwksUrl: 'https://idp/jwks' }));
    assert.doesNotThrow(() =>
      assertServerSecurity({ ...base, ...jwt, authJwksUrl: 'http://127.0.0.1:8080/jwks' }),
    );
    assert.throws(
      () => assertServerSecurity({ ...base, ...jwt, authJwksUrl: 'http://idp.example/jwks' }),
      /must be https/,
    );
    assert.throws(
      () => assertServerSecurity({ ...base, authJwksFile: '/jwks.json' }),
      /authJwtIssuer and authJwtAudience/,
    );
    assert.throws(
      () => assertServerSecurity({ ...base, ...jwt, authJwksFile: '/a', authJwksUrl: 'https://b' }),
      /set one, not both/,
    );
  });
});
