-- Direct uploads (SPEC 10): the PUT lands on a staging key in the ticket's own
-- object group, {tenant}/{ticket id}/; completion claims the ticket with a lease
-- (claim_token, claimed_until), copies the bytes to a new media's or asset's key
-- and verifies them there. A failed completion releases the claim; a crashed one
-- lets it lapse. Tickets created before this migration keep the storage_key they
-- were given ({tenant}/{id}/original): it is their staging key now, and the media
-- or asset they become gets a fresh id.
ALTER TABLE "direct_upload" ADD COLUMN "claim_token" UUID,
                            ADD COLUMN "claimed_until" TIMESTAMPTZ(3);

-- Outstanding tickets of a tenant (counted against DIRECT_UPLOAD_MAX_OUTSTANDING).
CREATE INDEX "direct_upload_tenant_id_expires_at_idx" ON "direct_upload"("tenant_id", "expires_at") WHERE "completed_at" IS NULL;
