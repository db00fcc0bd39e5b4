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
import { ALL_USER_SCOPES, mintToken } from '../auth/tokens.js';
import { exitOnError, parseCliArgs, UsageError } from './args.js';

const values = parseCliArgs(
  {
    tenant: { type: 'string', default: 'demo' },
    scope: { type: 'string' },
    sub: { type: 'string', default: 'dev-user' },
    expires: { type: 'string', default: '12h' },
  },
  'npm run token -- [--tenant T] [--scope "media:read media:create"] [--sub S] [--expires 12h]',
);

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
  const scopes = values.scope ? values.scope.split(/[\s,]+/).filter(Boolean) : ALL_USER_SCOPES;
  const token = await mintToken(secrets.jwtSecret!, { tenant: values.tenant!, subject: values.sub!, scopes, expiresIn: values.expires! }).catch((e: unknown) => {
    // A tenant that does not match, an --expires jose cannot read ("12h", "30m", "7d").
    throw new UsageError(`${e instanceof Error ? e.message : String(e)} (usage: npm run token -- --tenant T [--expires 12h])`);
  });
  console.log(token);
} catch (e) {
  exitOnError(e);
}
