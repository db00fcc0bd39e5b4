-- Tenant assets (SPEC 11): BLOB (a stored file) or LINK (an external URL), PUBLIC
-- or PRIVATE. Rows are soft-deleted (deleted_at); the key is unique per tenant
-- among the assets that are not deleted, so a deleted asset's key can be reused.
CREATE TYPE "AssetType" AS ENUM ('BLOB', 'LINK');
CREATE TYPE "AssetAccess" AS ENUM ('PUBLIC', 'PRIVATE');

CREATE TABLE "asset" (
    "tenant_id" TEXT NOT NULL,
    "id" UUID NOT NULL,
    "type" "AssetType" NOT NULL,
    "access" "AssetAccess" NOT NULL,
    "name" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    -- [{ "id": "...", "type": "PRODUCT" }]
    "ref_ids" JSONB NOT NULL DEFAULT '[]',
    "priority" INTEGER NOT NULL DEFAULT 0,
    "active" BOOLEAN NOT NULL DEFAULT true,
    "link_url" TEXT,
    -- Storage key of the current original (BLOB); set to NULL once a deleted asset's objects are purged.
    "storage_key" TEXT,
    "file_name" TEXT,
    "mime_type" TEXT,
    "bytes" BIGINT,
    -- Hex SHA-256 of the original.
    "checksum" TEXT,
    -- [{ name, width, height, size, mediaType, key }]
    "variants" JSONB NOT NULL DEFAULT '[]',
    "version" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "modified_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deleted_at" TIMESTAMPTZ(3),

    CONSTRAINT "asset_pkey" PRIMARY KEY ("tenant_id", "id")
);

-- The key is unique among live assets of a tenant (GET /tenants/{tenant}/assets/{key}).
CREATE UNIQUE INDEX "asset_tenant_id_key_key" ON "asset"("tenant_id", "key") WHERE "deleted_at" IS NULL;
-- Sorts of the query language (the id breaks ties, so pages are stable) and the default order (newest first).
CREATE INDEX "asset_tenant_id_created_at_id_idx" ON "asset"("tenant_id", "created_at" DESC, "id" DESC) WHERE "deleted_at" IS NULL;
CREATE INDEX "asset_tenant_id_modified_at_id_idx" ON "asset"("tenant_id", "modified_at", "id") WHERE "deleted_at" IS NULL;
CREATE INDEX "asset_tenant_id_priority_name_id_idx" ON "asset"("tenant_id", "priority" DESC, "name", "id") WHERE "deleted_at" IS NULL;
CREATE INDEX "asset_tenant_id_name_id_idx" ON "asset"("tenant_id", "name", "id") WHERE "deleted_at" IS NULL;
-- details.bytes ranges.
CREATE INDEX "asset_tenant_id_bytes_idx" ON "asset"("tenant_id", "bytes") WHERE "deleted_at" IS NULL;
-- refIds.id / refIds.type equality compiles to ref_ids @> '[{"id": ...}]'.
CREATE INDEX "asset_ref_ids_idx" ON "asset" USING GIN ("ref_ids" jsonb_path_ops);
-- The sweep looks for deleted assets whose objects are not purged yet.
CREATE INDEX "asset_deleted_at_idx" ON "asset"("deleted_at") WHERE "deleted_at" IS NOT NULL;
