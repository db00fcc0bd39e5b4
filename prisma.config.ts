// Prisma CLI configuration. The service itself never reads this file: it builds
// its client from the validated Config (src/config.ts) with @prisma/adapter-pg.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env['DATABASE_URL'] ?? 'postgresql://localhost/media' },
});
