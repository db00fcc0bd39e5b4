// Database faults for one tenant at a time, made real by PostgreSQL triggers that
// the run's global setup installs once, before any test file starts. Test files
// only write rows of test_faults.rule: no test runs DDL on the shared tables while
// others use them. (DROP TRIGGER takes an ACCESS EXCLUSIVE lock; queued behind a
// transaction that a test holds open, it made every other query on the table wait
// behind it, so reads of other test files, and a test's own checks, stalled until
// the held transaction had committed.)
import pg from 'pg';

/** The tables a rule can apply to, and the writes whose transaction it fails or holds. */
const TRIGGERS: { table: string; when: string; condition?: string }[] = [
  { table: 'media', when: 'INSERT' },
  { table: 'media_attachment', when: 'INSERT' },
  { table: 'media_role', when: 'INSERT' },
  { table: 'image_render', when: 'INSERT' },
  { table: 'asset', when: 'INSERT OR UPDATE' },
  // A direct upload's completion finishes its ticket first in the commit transaction, before its pending write is settled.
  { table: 'direct_upload', when: 'UPDATE', condition: 'NEW.completed_at IS NOT NULL AND OLD.completed_at IS NULL' },
];
export type FaultTable = 'media' | 'media_attachment' | 'media_role' | 'image_render' | 'asset' | 'direct_upload';

/** Run once per test run, after the migrations (global setup). Not in the public schema: schema.test.ts compares every public table with schema.prisma. */
export async function installDbFaults(url: string): Promise<void> {
  const sql = new pg.Client({ connectionString: url });
  await sql.connect();
  try {
    await sql.query(`
      CREATE SCHEMA IF NOT EXISTS test_faults;
      CREATE TABLE IF NOT EXISTS test_faults.rule (
        tenant_id text NOT NULL,
        table_name text NOT NULL,
        action text NOT NULL CHECK (action IN ('fail', 'hold')),
        seconds float NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, table_name)
      );
      CREATE OR REPLACE FUNCTION test_faults.apply() RETURNS trigger LANGUAGE plpgsql AS $$
      DECLARE
        r test_faults.rule;
        deadline timestamptz;
      BEGIN
        SELECT * INTO r FROM test_faults.rule WHERE tenant_id = NEW.tenant_id AND table_name = TG_TABLE_NAME;
        IF NOT FOUND THEN RETURN NEW; END IF;
        IF r.action = 'fail' THEN
          RAISE EXCEPTION 'injected fault: insert into % refused (SELECT secret FROM vault)', TG_TABLE_NAME;
        END IF;
        -- hold: until the test deletes the rule, or r.seconds have passed. Each
        -- statement reads committed rows anew (READ COMMITTED).
        deadline := clock_timestamp() + make_interval(secs => r.seconds);
        WHILE clock_timestamp() < deadline
          AND EXISTS (SELECT 1 FROM test_faults.rule WHERE tenant_id = NEW.tenant_id AND table_name = TG_TABLE_NAME AND action = 'hold') LOOP
          PERFORM pg_sleep(0.02);
        END LOOP;
        RETURN NEW;
      END $$;
    `);
    for (const t of TRIGGERS) {
      await sql.query(`
        DROP TRIGGER IF EXISTS test_faults_${t.table} ON ${t.table};
        CREATE TRIGGER test_faults_${t.table} BEFORE ${t.when} ON ${t.table} FOR EACH ROW
          ${t.condition ? `WHEN (${t.condition})` : ''} EXECUTE FUNCTION test_faults.apply();
      `);
    }
  } finally {
    await sql.end();
  }
}

type Query = (text: string, values: unknown[]) => Promise<unknown>;

/** Rules of one test file; `clear()` removes every rule it set. */
export class DbFaults {
  private readonly tenants = new Set<string>();

  constructor(private readonly query: Query) {}

  /** Inserts (or, for asset, updates) of the tenant's rows into `table` fail with a real PostgreSQL error. */
  async fail(tenant: string, table: FaultTable): Promise<void> {
    await this.set(tenant, [table], 'fail', 0);
  }

  /**
   * The transaction that writes one of the tenant's rows into `tables` waits in the
   * write until the returned release is called, or `maxSeconds` have passed (keep it
   * within Prisma's 5 s transaction timeout).
   */
  async hold(tenant: string, tables: FaultTable[], maxSeconds = 4.5): Promise<() => Promise<void>> {
    await this.set(tenant, tables, 'hold', maxSeconds);
    return async () => {
      await this.query('DELETE FROM test_faults.rule WHERE tenant_id = $1 AND table_name = ANY($2)', [tenant, tables]);
    };
  }

  async clear(): Promise<void> {
    const tenants = [...this.tenants];
    this.tenants.clear();
    if (tenants.length) await this.query('DELETE FROM test_faults.rule WHERE tenant_id = ANY($1)', [tenants]);
  }

  private async set(tenant: string, tables: FaultTable[], action: 'fail' | 'hold', seconds: number): Promise<void> {
    this.tenants.add(tenant);
    for (const table of tables) {
      await this.query(
        'INSERT INTO test_faults.rule (tenant_id, table_name, action, seconds) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, table_name) DO UPDATE SET action = $3, seconds = $4',
        [tenant, table, action, seconds],
      );
    }
  }
}
