import type { Prisma, PrismaClient } from '../generated/prisma/client.js';

const uncertain = new WeakSet<object>();

/**
 * An interactive transaction that says, when it fails, whether it can have
 * committed. An error thrown while `fn` runs (by `fn` or by one of its queries)
 * means COMMIT was never sent: the transaction is rolled back, or is aborted by
 * PostgreSQL when its connection goes. Once `fn` has returned, Prisma sends COMMIT;
 * an error from then on (the connection lost during COMMIT, the transaction
 * expired) leaves the outcome unknown, and `mayHaveCommitted` says so. Callers
 * delete objects written for the rows only when it does not: objects of rows that
 * did not commit are left to the sweep, which deletes groups without rows.
 */
export async function transact<T>(
  prisma: PrismaClient,
  fn: (tx: Prisma.TransactionClient) => Promise<T>,
  options?: { maxWait?: number; timeout?: number },
): Promise<T> {
  let sent = false;
  try {
    return await prisma.$transaction(async (tx) => {
      const result = await fn(tx);
      sent = true;
      return result;
    }, options);
  } catch (e) {
    if (!sent) throw e;
    const err = typeof e === 'object' && e !== null ? e : new Error(String(e));
    uncertain.add(err);
    throw err;
  }
}

/** True for an error of `transact` (or one caused by it) whose transaction may have committed: its outcome is unknown. */
export function mayHaveCommitted(e: unknown): boolean {
  for (let c = e, depth = 0; typeof c === 'object' && c !== null && depth < 10; c = (c as { cause?: unknown }).cause, depth++) {
    if (uncertain.has(c)) return true;
  }
  return false;
}
