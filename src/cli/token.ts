// Prints a user token signed with the configured JWT_SECRET, or with the
// development secret the service generated under DATA_DIR at its first start.
//   [DATA_DIR=…] npm run token -- --tenant demo [--scope "media:read media:create"] [--sub alice] [--expires 12h]
// DATA_DIR is read as the service reads it (src/config.ts): a service started with
// another DATA_DIR needs the same one here (its start-up banner prints the command).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../config.js';
import { resolveSecrets } from '../auth/secrets.js';
import { secretsDir } from '../auth/secret-files.js';
import { SCOPES } from '../auth/principal.js';
import { ALL_USER_SCOPES, mintToken } from '../auth/tokens.js';
import { exitOnError, parseCliArgs, tenantArg, usageExit, UsageError } from './args.js';

const USAGE = 'npm run token -- [--tenant T] [--scope "media:read media:create"] [--sub S] [--expires 12h]';
const values = parseCliArgs(
  {
    tenant: { type: 'string', default: 'demo' },
    scope: { type: 'string' },
    sub: { type: 'string', default: 'dev-user' },
    expires: { type: 'string', default: '12h' },
  },
  {
    usage: USAGE,
    summary:
      'Prints a user token signed with JWT_SECRET, or with the development secret the service generated under DATA_DIR at its first start ' +
      '(start the service once first; its start-up banner prints this command with its DATA_DIR).',
    options: {
      '--tenant T': 'the tenant (default demo): 3 to 16 lower-case letters and digits, starting with a letter',
      '--scope "S1 S2"': `scopes, separated by spaces or commas (default all: ${ALL_USER_SCOPES.join(' ')})`,
      '--sub S': 'the subject (default dev-user)',
      '--expires 12h': 'lifetime: 30m, 12h, 7d, … (default 12h; the service refuses tokens older than JWT_MAX_TOKEN_AGE_SECONDS)',
    },
    env: {
      DATA_DIR: 'the data directory of the service the token is for (default .data)',
      JWT_SECRET: 'the service\'s signing secret, when it has one (JWT_JWKS_URL: tokens come from the identity provider instead)',
    },
  },
);
const tenant = tenantArg(values.tenant, USAGE)!;
const scopeList = values.scope ? values.scope.split(/[\s,]+/).filter(Boolean) : ALL_USER_SCOPES;
const unknownScope = scopeList.find((s) => !(SCOPES as readonly string[]).includes(s));
if (unknownScope !== undefined) usageExit(`--scope: unknown scope ${JSON.stringify(unknownScope)}; the scopes are ${SCOPES.join(', ')}`, USAGE);

try {
  const config = loadConfig();
  if (config.jwt.jwksUrl) throw new UsageError('JWT_JWKS_URL is set: tokens come from your identity provider, not from this command.');
  const secretFile = path.join(secretsDir(config.dataDir), 'jwt-secret');
  if (!config.jwt.secret && !existsSync(secretFile)) {
    // Generating one here would mint a token no service accepts: the service's secret lives in its own DATA_DIR.
    throw new UsageError(
      `no development secret at ${secretFile}: the service creates it at its first start with DATA_DIR=${config.dataDir}; ` +
        'start it first, or set DATA_DIR to the one the service runs with (its start-up banner prints this command with it)',
    );
  }
  const secrets = resolveSecrets(config);
  const token = await mintToken(secrets.jwtSecret!, { tenant, subject: values.sub!, scopes: scopeList, expiresIn: values.expires! }).catch((e: unknown) => {
    // An --expires jose cannot read ("12h", "30m", "7d").
    throw new UsageError(`${e instanceof Error ? e.message : String(e)} (usage: ${USAGE})`);
  });
  console.log(token);
} catch (e) {
  exitOnError(e);
}
