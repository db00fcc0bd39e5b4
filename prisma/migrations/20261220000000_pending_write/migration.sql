-- A write in progress into one object group {tenant}/{group_id}/ (an upload, a
-- direct upload's completion, an asset's new revision, a key rotation): written
-- before the first object and removed in the transaction that commits the rows
-- pointing at them. The sweep never deletes objects of a group that has one, so
-- an upload between its store and its commit is safe whatever the grace period.
-- The writer refreshes touched_at while it runs; a row that nobody refreshed for
-- ten minutes is a crashed writer's, and the sweep removes it (after which the
-- group's objects are judged like any other).
CREATE TABLE "pending_write" (
    "token" UUID NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "group_id" UUID NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "touched_at" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "pending_write_pkey" PRIMARY KEY ("token")
);
CREATE INDEX "pending_write_tenant_id_group_id_idx" ON "pending_write" ("tenant_id", "group_id");
CREATE INDEX "pending_write_touched_at_idx" ON "pending_write" ("touched_at");
