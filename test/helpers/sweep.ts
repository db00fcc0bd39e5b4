import type { SweepReport } from '../../src/modules/sweep/sweep.service.js';
import type { TestApp } from './app.js';

/**
 * One sweep of a tenant (no grace period unless given), retried while another
 * test file's sweep holds the lock (the run shares one database, and one instance
 * sweeps at a time).
 */
export async function sweepTenant(app: Pick<TestApp, 'services'>, tenant: string, graceSeconds = 0, service = app.services.sweep): Promise<SweepReport> {
  for (let i = 0; i < 200; i++) {
    const report = await service.run({ graceSeconds, tenant });
    if (report) return report;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the sweep lock stayed taken for 20 s');
}
