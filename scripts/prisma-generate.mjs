// Runs `prisma generate` offline. The Prisma CLI tries to download its schema
// engine unless PRISMA_SCHEMA_ENGINE_BINARY names an existing file; `generate`
// never executes it, so any existing file will do (see ENVIRONMENT.md).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

if (!existsSync('prisma/schema.prisma')) process.exit(0);
const env = { ...process.env };
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) env.PRISMA_SCHEMA_ENGINE_BINARY = process.execPath;
const require = createRequire(import.meta.url);
const cli = require.resolve('prisma/build/index.js');
const r = spawnSync(process.execPath, [cli, 'generate'], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
