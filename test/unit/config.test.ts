import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

// Worker keys as generated (openssl rand -base64 32 / -hex 16).
const KEY_A = 'Qm9vZ2x5LXdvcmtlci1rZXktQWxwaGEtOTk3Mw==';
const KEY_B = '5f1c9e2ab7d04c83a6e19b0f2d47c8e1';

describe('loadConfig', () => {
  it('has the documented defaults with an empty environment', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 4000,
      host: undefined,
      dataDir: path.resolve('.data'),
      databaseUrl: undefined,
      databasePoolSize: 10,
      s3: undefined,
      publicBaseUrl: undefined,
      jwt: { secret: undefined, jwksUrl: undefined, issuer: undefined, audience: undefined, maxTokenAgeSeconds: 86_400, clockToleranceSeconds: 30 },
      mediaKeys: undefined,
      policyFile: undefined,
      logLevel: 'info',
      introspection: true,
      signedUrlTtlSeconds: 900,
    });
    expect(c.workerKeys.size).toBe(0);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('has deliberate server timeouts: headers 20 s, no cap on a whole request, 60 s idle, 5 s keep-alive', () => {
    expect(loadConfig({}).http).toEqual({ headersTimeoutMs: 20_000, requestTimeoutMs: 0, idleTimeoutMs: 60_000, keepAliveTimeoutMs: 5_000 });
    expect(loadConfig({ HTTP_IDLE_TIMEOUT_SECONDS: '5', HTTP_REQUEST_TIMEOUT_SECONDS: '3600' }).http).toMatchObject({ idleTimeoutMs: 5000, requestTimeoutMs: 3_600_000 });
    expect(configError({ HTTP_REQUEST_TIMEOUT_SECONDS: '10', HTTP_HEADERS_TIMEOUT_SECONDS: '30' }).message).toMatch(/HTTP_REQUEST_TIMEOUT_SECONDS/);
    expect(configError({ HTTP_IDLE_TIMEOUT_SECONDS: 'soon' }).message).toMatch(/HTTP_IDLE_TIMEOUT_SECONDS/);
  });

  it('reads the variables it is given and treats blank values as unset', () => {
    const c = loadConfig({
      PORT: '8080',
      DATA_DIR: '/var/lib/media',
      DATABASE_URL: 'postgres://u:p@db:5432/media',
      PUBLIC_BASE_URL: 'https://media.example.com///',
      JWT_SECRET: 's'.repeat(32),
      MEDIA_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}`,
      LOG_LEVEL: 'debug',
      S3_BUCKET: '   ',
      MEDIA_POLICY_FILE: ' /etc/policy.json ',
    });
    expect(c).toMatchObject({
      port: 8080,
      dataDir: '/var/lib/media',
      databaseUrl: 'postgres://u:p@db:5432/media',
      publicBaseUrl: 'https://media.example.com',
      logLevel: 'debug',
      s3: undefined,
      policyFile: '/etc/policy.json',
    });
    expect(c.jwt.secret).toBe('s'.repeat(32));
  });

  it('refuses LINK assets to non-public hosts unless ASSET_LINKS_ALLOW_PRIVATE_HOSTS says otherwise', () => {
    expect(loadConfig({}).assetLinksAllowPrivateHosts).toBe(false);
    expect(loadConfig({ ASSET_LINKS_ALLOW_PRIVATE_HOSTS: 'true' }).assetLinksAllowPrivateHosts).toBe(true);
    expect(loadConfig({ ASSET_LINKS_ALLOW_PRIVATE_HOSTS: '0' }).assetLinksAllowPrivateHosts).toBe(false);
    expect(configError({ ASSET_LINKS_ALLOW_PRIVATE_HOSTS: 'yes' }).message).toMatch(/ASSET_LINKS_ALLOW_PRIVATE_HOSTS/);
  });

  it('has no CORS origins by default; CORS_ORIGINS lists exact origins', () => {
    expect(loadConfig({}).corsOrigins.size).toBe(0);
    expect(loadConfig({ CORS_ORIGINS: ' ' }).corsOrigins.size).toBe(0);
    const c = loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://127.0.0.1:5173,,http://[::1]:8080,https://app.example.com' });
    expect([...c.corsOrigins]).toEqual(['https://app.example.com', 'http://127.0.0.1:5173', 'http://[::1]:8080']);
  });

  it.each([
    ['*', /wildcard/],
    ['https://*.example.com', /wildcard/],
    ['app.example.com', /not an origin/],
    ['https://app.example.com/', /did you mean https:\/\/app\.example\.com\?/],
    ['https://app.example.com/spa', /did you mean https:\/\/app\.example\.com\?/],
    ['https://App.Example.com', /did you mean https:\/\/app\.example\.com\?/],
    ['https://app.example.com:443', /did you mean https:\/\/app\.example\.com\?/],
    ['https://user@app.example.com', /not an origin as browsers send it/],
    ['https://app.example.com?x=1', /not an origin as browsers send it/],
    ['ftp://files.example.com', /http: or https:/],
    ['null', /not an origin/],
    ['https://ok.example.com,http://', /entry 2/],
  ])('refuses CORS_ORIGINS=%s, naming the variable and the entry', (value, message) => {
    const e = configError({ CORS_ORIGINS: value });
    expect(e.message).toMatch(/\bCORS_ORIGINS\b/);
    expect(e.message).toMatch(message);
  });

  it.each([['abc'], ['-1'], ['65536'], ['80.5']])('refuses PORT=%s, naming PORT', (port) => {
    const e = configError({ PORT: port });
    expect(e.message).toMatch(/^invalid configuration:/);
    expect(e.message).toMatch(/\bPORT\b/);
  });

  it('caps outstanding direct uploads per tenant: 100 by default, DIRECT_UPLOAD_MAX_OUTSTANDING at least 1', () => {
    expect(loadConfig({}).directUploadMaxOutstanding).toBe(100);
    expect(loadConfig({ DIRECT_UPLOAD_MAX_OUTSTANDING: '7' }).directUploadMaxOutstanding).toBe(7);
    for (const bad of ['0', '-3', 'many', '2.5']) expect(configError({ DIRECT_UPLOAD_MAX_OUTSTANDING: bad }).message).toMatch(/\bDIRECT_UPLOAD_MAX_OUTSTANDING\b/);
  });

  it('turns introspection off by default in production (NODE_ENV=production), unless INTROSPECTION says otherwise', () => {
    expect(loadConfig({})).toMatchObject({ production: false, introspection: true });
    expect(loadConfig({ NODE_ENV: 'development' })).toMatchObject({ production: false, introspection: true });
    expect(loadConfig({ NODE_ENV: 'production' })).toMatchObject({ production: true, introspection: false });
    expect(loadConfig({ NODE_ENV: 'production', INTROSPECTION: 'true' })).toMatchObject({ production: true, introspection: true });
    expect(loadConfig({ INTROSPECTION: 'false' })).toMatchObject({ production: false, introspection: false });
  });

  it('names every bad variable at once', () => {
    const e = configError({ PORT: 'x', LOG_LEVEL: 'loud', DATABASE_URL: 'not a url' });
    expect(e.message).toMatch(/\bPORT\b/);
    expect(e.message).toMatch(/\bLOG_LEVEL\b/);
    expect(e.message).toMatch(/\bDATABASE_URL\b/);
  });

  it('refuses a JWT_SECRET shorter than 32 characters, naming it', () => {
    const e = configError({ JWT_SECRET: 'short-secret' });
    expect(e.message).toMatch(/JWT_SECRET/);
    expect(e.message).toMatch(/32/);
    expect(loadConfig({ JWT_SECRET: 'x'.repeat(32) }).jwt.secret).toHaveLength(32);
  });

  it('refuses JWT_SECRET together with JWT_JWKS_URL', () => {
    const e = configError({ JWT_SECRET: 'x'.repeat(32), JWT_JWKS_URL: 'https://idp.example.com/jwks.json' });
    expect(e.message).toMatch(/JWT_SECRET/);
    expect(e.message).toMatch(/JWT_JWKS_URL/);
  });

  it('refuses S3_ENDPOINT (or S3_REGION, S3_FORCE_PATH_STYLE) without S3_BUCKET, naming S3_BUCKET', () => {
    const envs: Record<string, string>[] = [{ S3_ENDPOINT: 'http://127.0.0.1:9000' }, { S3_REGION: 'eu-west-1' }, { S3_FORCE_PATH_STYLE: 'true' }];
    for (const env of envs) {
      expect(configError(env).message).toMatch(/S3_BUCKET/);
    }
  });

  it('builds the S3 settings when S3_BUCKET is set', () => {
    const dev = { DEV_ALLOW_GENERATED_SECRETS: 'true' };
    const c = loadConfig({ ...dev, S3_BUCKET: 'media', S3_ENDPOINT: 'http://127.0.0.1:9000', S3_REGION: 'eu-west-1', S3_FORCE_PATH_STYLE: '1' });
    expect(c.s3).toMatchObject({ bucket: 'media', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1', forcePathStyle: true });
    expect(loadConfig({ ...dev, S3_BUCKET: 'media' }).s3).toMatchObject({ bucket: 'media', forcePathStyle: false });
    expect(configError({ S3_BUCKET: 'media', S3_ENDPOINT: 'nope' }).message).toMatch(/S3_ENDPOINT/);
    expect(configError({ S3_BUCKET: 'media', S3_FORCE_PATH_STYLE: 'yes' }).message).toMatch(/S3_FORCE_PATH_STYLE/);
  });

  it('allows SSE-C over plain http only when S3_SSE_C_OVER_HTTP=loopback says so', () => {
    expect(loadConfig({}).sseCOverHttp).toBeUndefined();
    expect(loadConfig({ S3_SSE_C_OVER_HTTP: '' }).sseCOverHttp).toBeUndefined();
    expect(loadConfig({ S3_SSE_C_OVER_HTTP: 'loopback' }).sseCOverHttp).toBe('loopback');
    expect(configError({ S3_SSE_C_OVER_HTTP: 'always' }).message).toMatch(/S3_SSE_C_OVER_HTTP/);
  });

  describe('WORKER_API_KEYS', () => {
    it('parses key:types:tenants entries separated by commas, trimming blanks', () => {
      const c = loadConfig({ WORKER_API_KEYS: `${KEY_A}:signature-processor|otp-validator:acme|globex, ${KEY_B}: ocr : acme ` });
      expect([...c.workerKeys.keys()]).toEqual([KEY_A, KEY_B]);
      expect([...c.workerKeys.get(KEY_A)!.types]).toEqual(['signature-processor', 'otp-validator']);
      expect([...(c.workerKeys.get(KEY_A)!.tenants as Set<string>)]).toEqual(['acme', 'globex']);
      expect([...c.workerKeys.get(KEY_B)!.types]).toEqual(['ocr']);
      expect([...(c.workerKeys.get(KEY_B)!.tenants as Set<string>)]).toEqual(['acme']);
    });

    it('an empty value means no worker keys', () => {
      expect(loadConfig({ WORKER_API_KEYS: '' }).workerKeys.size).toBe(0);
      expect(loadConfig({ WORKER_API_KEYS: '   ' }).workerKeys.size).toBe(0);
    });

    it('refuses an entry of the old format (no tenants), explaining the new one and never printing the key', () => {
      const e = configError({ WORKER_API_KEYS: `${KEY_A}:signature-processor|otp-validator` });
      expect(e.message).toMatch(/WORKER_API_KEYS/);
      expect(e.message).toMatch(/names no tenants/);
      expect(e.message).toContain('key:type1|type2:tenant1|tenant2');
      expect(e.message).not.toContain(KEY_A);
    });

    it('a key for every tenant (*) needs WORKER_API_KEYS_ALLOW_ANY_TENANT=true', () => {
      const e = configError({ WORKER_API_KEYS: `${KEY_A}:ocr:*` });
      expect(e.message).toMatch(/WORKER_API_KEYS_ALLOW_ANY_TENANT/);
      expect(loadConfig({ WORKER_API_KEYS: `${KEY_A}:ocr:*`, WORKER_API_KEYS_ALLOW_ANY_TENANT: 'true' }).workerKeys.get(KEY_A)!.tenants).toBe('*');
      expect(configError({ WORKER_API_KEYS: `${KEY_A}:ocr:*`, WORKER_API_KEYS_ALLOW_ANY_TENANT: 'false' }).message).toMatch(/WORKER_API_KEYS_ALLOW_ANY_TENANT/);
    });

    it.each([
      ['a key without types', KEY_A],
      ['a key with an empty type list', `${KEY_A}::acme`],
      ['a key bound to no type at all', `${KEY_A}:|:acme`],
      ['a key bound to no tenant', `${KEY_A}:ocr:`],
      ['a key bound to an invalid tenant', `${KEY_A}:ocr:Acme`],
      ['a tenant list mixing * and names', `${KEY_A}:ocr:acme|*`],
      ['an empty key', ':ocr:acme'],
      ['too many fields', `${KEY_A}:ocr:acme:extra`],
      ['a key of 31 characters', `${KEY_B.slice(0, 31)}:ocr:acme`],
      ['a second key that is too short', `${KEY_A}:ocr:acme, ${'k'.repeat(16)}:ocr:acme`],
      ['a low-entropy key of one character', `${'a'.repeat(40)}:ocr:acme`],
      ['a low-entropy key of few characters', `${'abcabcabdabcabcabcabdabcabcabcab'}:ocr:acme`],
      ['a short pattern repeated', `${'0123456789ab'.repeat(3)}:ocr:acme`],
      ['a key dominated by one character', `${'x'.repeat(16)}0123456789abcdefghijk:ocr:acme`],
      ['a key with a blank inside', `${KEY_B.slice(0, 16)} ${KEY_B.slice(16)}:ocr:acme`],
      ['the same key twice', `${KEY_A}:ocr:acme,${KEY_A}:otp-validator:acme`],
    ])('refuses %s, naming WORKER_API_KEYS', (_name, value) => {
      const e = configError({ WORKER_API_KEYS: value });
      expect(e.message).toMatch(/WORKER_API_KEYS/);
      expect(e.message).not.toContain(KEY_A);
    });

    it('accepts generated keys (hex, base64, base64url)', () => {
      for (const key of [KEY_A, KEY_B, 'pX3v_9QzL-2mN8rT4wYb6cD1eF0gH7jK5sA']) {
        expect(loadConfig({ WORKER_API_KEYS: `${key}:ocr:acme` }).workerKeys.has(key)).toBe(true);
      }
    });
  });

  describe('JWT settings', () => {
    const JWKS = { JWT_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json', JWT_ISSUER: 'https://idp.example.com/', JWT_AUDIENCE: 'media-api', SIGNING_SECRET: 'Zk3Qp8Wn2Rt6Yv0Bx4Mc9Ld1Hs5Jf7Ga3Ue' };

    it('accepts JWKS over https with an issuer and an audience', () => {
      expect(loadConfig(JWKS).jwt).toMatchObject({ jwksUrl: JWKS.JWT_JWKS_URL, issuer: JWKS.JWT_ISSUER, audience: 'media-api' });
    });

    it('refuses a JWKS URL over http to a host other than this machine', () => {
      for (const url of ['http://idp.example.com/jwks.json', 'http://10.0.0.5/jwks.json', 'http://127.0.0.1.nip.io/jwks.json', 'ftp://idp.example.com/jwks.json']) {
        expect(configError({ ...JWKS, JWT_JWKS_URL: url }).message, url).toMatch(/JWT_JWKS_URL: must be an https: URL/);
      }
    });

    it('accepts JWKS over http to a loopback host (local identity providers, tests)', () => {
      for (const url of ['http://127.0.0.1:8080/jwks.json', 'http://localhost:9/jwks', 'http://[::1]:8080/jwks.json', 'http://127.1.2.3/jwks']) {
        expect(loadConfig({ ...JWKS, JWT_JWKS_URL: url }).jwt.jwksUrl, url).toBe(url);
      }
    });

    it('refuses JWKS without JWT_ISSUER or without JWT_AUDIENCE', () => {
      expect(configError({ ...JWKS, JWT_ISSUER: '' }).message).toMatch(/JWT_ISSUER: required with JWT_JWKS_URL/);
      expect(configError({ ...JWKS, JWT_AUDIENCE: ' ' }).message).toMatch(/JWT_AUDIENCE: required with JWT_JWKS_URL/);
      const both = configError({ JWT_JWKS_URL: JWKS.JWT_JWKS_URL }).message;
      expect(both).toMatch(/JWT_ISSUER/);
      expect(both).toMatch(/JWT_AUDIENCE/);
    });

    it('refuses JWKS without SIGNING_SECRET (links and direct upload ids must verify on every instance)', () => {
      expect(configError({ ...JWKS, SIGNING_SECRET: '' }).message).toMatch(/SIGNING_SECRET: required with JWT_JWKS_URL/);
      expect(configError({ ...JWKS, SIGNING_SECRET: 'short' }).message).toMatch(/SIGNING_SECRET/);
    });

    it('reads the maximum token age and the clock tolerance, within bounds', () => {
      expect(loadConfig({ JWT_MAX_TOKEN_AGE_SECONDS: '3600', JWT_CLOCK_TOLERANCE_SECONDS: '0' }).jwt).toMatchObject({ maxTokenAgeSeconds: 3600, clockToleranceSeconds: 0 });
      expect(configError({ JWT_MAX_TOKEN_AGE_SECONDS: '10' }).message).toMatch(/JWT_MAX_TOKEN_AGE_SECONDS/);
      expect(configError({ JWT_MAX_TOKEN_AGE_SECONDS: String(365 * 24 * 3600) }).message).toMatch(/JWT_MAX_TOKEN_AGE_SECONDS/);
      expect(configError({ JWT_CLOCK_TOLERANCE_SECONDS: '3600' }).message).toMatch(/JWT_CLOCK_TOLERANCE_SECONDS/);
    });
  });

  it('sizes the expensive-query limits and the image queue from the cores and the pool, and reads them when given', () => {
    const cores = os.availableParallelism();
    const c = loadConfig({});
    expect(c.expensiveQueries).toEqual({ perTenant: Math.min(Math.max(1, Math.floor(cores / 2)), 5), total: 5, waitMs: 2000, timeoutMs: 1000 });
    // Small pools keep the limits below their size.
    expect(loadConfig({ DATABASE_POOL_SIZE: '2' }).expensiveQueries).toMatchObject({ perTenant: 1, total: 1 });
    const images = Math.max(1, Math.min(cores, 2));
    expect(c.images).toEqual({ concurrency: images, maxWaiting: 16 * images, waitMs: 60_000, memoryBytes: 512 * 1024 * 1024 });
    expect(loadConfig({ UV_THREADPOOL_SIZE: '64' }).images.concurrency).toBe(cores);
    // Half the pool caps the default per tenant too, however many cores.
    expect(loadConfig({ DATABASE_POOL_SIZE: '4' }).expensiveQueries.perTenant).toBeLessThanOrEqual(2);
    const given = loadConfig({
      DATABASE_POOL_SIZE: '20',
      TENANT_EXPENSIVE_QUERY_LIMIT: '2',
      EXPENSIVE_QUERY_LIMIT: '6',
      EXPENSIVE_QUERY_WAIT_MS: '500',
      EXPENSIVE_QUERY_TIMEOUT_MS: '250',
      IMAGE_CONCURRENCY: '3',
      IMAGE_QUEUE_LENGTH: '0',
      IMAGE_QUEUE_WAIT_MS: '1000',
      IMAGE_MEMORY_MB: '256',
    });
    expect(given.expensiveQueries).toEqual({ perTenant: 2, total: 6, waitMs: 500, timeoutMs: 250 });
    expect(given.images).toEqual({ concurrency: 3, maxWaiting: 0, waitMs: 1000, memoryBytes: 256 * 1024 * 1024 });
  });

  it('refuses expensive-query limits that contradict each other or the pool', () => {
    expect(configError({ TENANT_EXPENSIVE_QUERY_LIMIT: '4', EXPENSIVE_QUERY_LIMIT: '3' }).message).toContain('TENANT_EXPENSIVE_QUERY_LIMIT');
    expect(configError({ DATABASE_POOL_SIZE: '4', EXPENSIVE_QUERY_LIMIT: '4' }).message).toContain('EXPENSIVE_QUERY_LIMIT: must be below DATABASE_POOL_SIZE');
    expect(configError({ IMAGE_CONCURRENCY: '0' }).message).toContain('IMAGE_CONCURRENCY');
    expect(configError({ EXPENSIVE_QUERY_TIMEOUT_MS: 'soon' }).message).toContain('EXPENSIVE_QUERY_TIMEOUT_MS');
  });
});
