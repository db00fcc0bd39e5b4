// Prints a user token signed with the configured JWT_SECRET, or with the
// development secret the embedded default keeps under DATA_DIR.
//   npm run token -- --tenant demo [--scope "media:read media:create"] [--sub alice] [--expires 12h]
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { resolveSecrets } from '../auth/secrets.js';
import { ALL_USER_SCOPES, mintToken } from '../auth/tokens.js';

const { values } = parseArgs({
  options: {
    tenant: { type: 'string', default: 'demo' },
    scope: { type: 'string' },
    sub: { type: 'string', default: 'dev-user' },
    expires: { type: 'string', default: '12h' },
  },
});
const config = loadConfig();
const secrets = resolveSecrets(config);
if (!secrets.jwtSecret) {
  console.error('JWT_JWKS_URL is set: tokens come from your identity provider, not from this command.');
  process.exit(2);
}
const scopes = values.scope ? values.scope.split(/[\s,]+/).filter(Boolean) : ALL_USER_SCOPES;
console.log(await mintToken(secrets.jwtSecret, { tenant: values.tenant!, subject: values.sub!, scopes, expiresIn: values.expires! }));
