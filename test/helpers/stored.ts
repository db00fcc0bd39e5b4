import type { TestApp } from './app.js';

/** Keys of every object stored for a tenant (on whichever driver the run uses). */
export async function storedKeys(app: TestApp, tenant: string): Promise<string[]> {
  return (await app.services.storage.list(`${tenant}/`)).map((o) => o.key);
}
