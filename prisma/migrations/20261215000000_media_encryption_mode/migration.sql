-- How each encrypted media's objects (original and variants) are stored:
-- 'app' (AES-256-GCM segments written by the service) or 'sse-c' (the S3 store
-- encrypts with a customer key); NULL for unencrypted media. Reads use the mode
-- the object was written with, not the mode the process chose at start.
--
-- Rows encrypted before this migration cannot be classified offline (the mode was
-- only the process-wide choice of the start that wrote them). They stay NULL here;
-- the first start after the migration fills them with what the earlier start-up
-- probe would have chosen against the same store (local disk: 'app'; S3: 'sse-c'
-- when a GET without the customer key fails with any 4xx, else 'app') and then
-- refuses to start when the store cannot serve them (see docs/encryption.md).
ALTER TABLE "media" ADD COLUMN "encryption_mode" TEXT;
ALTER TABLE "media" ADD CONSTRAINT "media_encryption_mode_check"
  CHECK ("encryption_mode" IS NULL OR ("encrypted" AND "encryption_mode" IN ('app', 'sse-c')));
