-- Resumable (tus 1.0) uploads, /uploads/resumable. One row per upload, written at
-- creation before the tus store creates anything, carrying what the media will be
-- (entity, tags, role: decided and checked at creation) and the upload's state. The
-- bytes live outside every media group, under tus-uploads/{id} (a file on local
-- disk, a multipart upload on S3); on the last byte they are copied to the new
-- media's own key (inspected on their way in, or read back there), and the media is
-- committed in a transaction that sets media_id (once: a second completion finds it set). The row stays
-- until it expires, so that a client resuming a finished upload learns its media;
-- the sweep removes expired rows and the bytes of unfinished ones.
CREATE TABLE "resumable_upload" (
    "id" UUID NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "created_by" TEXT NOT NULL,
    "entity_type" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "role" "MediaRole",
    "file_name" TEXT NOT NULL,
    -- The client's filetype, normalised; when set, the detected type must equal it.
    "declared_type" TEXT,
    -- Upload-Length: fixed at creation (deferred lengths are refused).
    "length" BIGINT NOT NULL,
    -- Set when the first bytes arrive and their type is accepted, before any byte is stored.
    "detected_type" TEXT,
    -- The client's Upload-Metadata as parsed (HEAD answers echo it).
    "metadata" JSONB NOT NULL,
    -- Who wrote the upload's bytes last: the token of the running inspection that saw
    -- them on their way in, or another value (a write without one). An inspection is
    -- used at completion only when every write since byte 0 was its own.
    "writer" UUID,
    "media_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "completed_at" TIMESTAMPTZ(3),
    CONSTRAINT "resumable_upload_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "resumable_upload_length_check" CHECK ("length" > 0),
    CONSTRAINT "resumable_upload_completed_check" CHECK (("media_id" IS NULL) = ("completed_at" IS NULL))
);
CREATE UNIQUE INDEX "resumable_upload_tenant_id_id_key" ON "resumable_upload" ("tenant_id", "id");
-- The sweep looks for expired uploads.
CREATE INDEX "resumable_upload_expires_at_idx" ON "resumable_upload" ("expires_at");
-- Unfinished uploads per tenant (the cap at creation counts them).
CREATE INDEX "resumable_upload_tenant_id_expires_at_idx" ON "resumable_upload" ("tenant_id", "expires_at") WHERE "completed_at" IS NULL;
