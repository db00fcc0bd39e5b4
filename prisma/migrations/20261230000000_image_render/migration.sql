-- Renders of an image (issue 14): the named variants of media uploaded from now
-- on and every ?w=&h=&fit=&format=&q= render of a media or an image asset, made on
-- first request and stored beside the original (under the media's prefix, or the
-- asset's revision folder). One row per stored render: which original it was made
-- from (source_key: a render of a replaced or re-keyed original is never served,
-- and the sweep removes such rows), its canonical parameters (params, and
-- params_hash, which also names its object), and what serving it needs (size,
-- type, and for an encrypted media the ring key that sealed it).
CREATE TABLE "image_render" (
    "tenant_id" TEXT NOT NULL,
    "owner_kind" TEXT NOT NULL,
    "owner_id" UUID NOT NULL,
    "source_key" TEXT NOT NULL,
    "params_hash" TEXT NOT NULL,
    "params" TEXT NOT NULL,
    "storage_key" TEXT NOT NULL,
    "size" BIGINT NOT NULL,
    "media_type" TEXT NOT NULL,
    "width" INTEGER NOT NULL,
    "height" INTEGER NOT NULL,
    "encryption_key_id" TEXT,
    "encryption_mode" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "image_render_pkey" PRIMARY KEY ("tenant_id", "owner_id", "source_key", "params_hash"),
    CONSTRAINT "image_render_owner_kind_check" CHECK ("owner_kind" IN ('media', 'asset')),
    CONSTRAINT "image_render_params_hash_check" CHECK ("params_hash" ~ '^[0-9a-f]{32}$')
);
CREATE INDEX "image_render_created_at_idx" ON "image_render" ("created_at");

-- Renders need the size of an image asset's original (media rows have had it).
-- NULL for assets stored before: read from the original's header on first render.
ALTER TABLE "asset" ADD COLUMN "width" INTEGER, ADD COLUMN "height" INTEGER;
