-- Media metadata: media, attachments to business entities, roles.
CREATE TYPE "SecurityLevel" AS ENUM ('STANDARD', 'SENSITIVE', 'CRITICAL');
CREATE TYPE "MediaKind" AS ENUM ('IMAGE', 'VIDEO', 'AUDIO', 'DOCUMENT', 'FILE');
CREATE TYPE "MediaRole" AS ENUM ('AVATAR', 'ID_DOCUMENT', 'PRIMARY_PHOTO', 'LEASE_ORIGINAL', 'LEASE_SIGNED');

CREATE TABLE "media" (
    "id" UUID NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "file_name" TEXT NOT NULL,
    "media_type" TEXT NOT NULL,
    "kind" "MediaKind" NOT NULL,
    "file_size" BIGINT NOT NULL,
    "checksum" TEXT NOT NULL,
    "security_level" "SecurityLevel" NOT NULL,
    "encrypted" BOOLEAN NOT NULL DEFAULT false,
    "encryption_key_id" TEXT,
    "storage_key" TEXT NOT NULL,
    "tags" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "width" INTEGER,
    "height" INTEGER,
    "duration_seconds" DOUBLE PRECISION,
    "page_count" INTEGER,
    "variants" JSONB NOT NULL DEFAULT '[]',
    "created_by" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "version" INTEGER NOT NULL DEFAULT 1,
    "deleted_at" TIMESTAMPTZ(3),

    CONSTRAINT "media_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "media_attachment" (
    "tenant_id" TEXT NOT NULL,
    "entity_type" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "media_id" UUID NOT NULL,
    "attached_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "media_attachment_pkey" PRIMARY KEY ("tenant_id","entity_type","entity_id","media_id")
);

CREATE TABLE "media_role" (
    "tenant_id" TEXT NOT NULL,
    "entity_type" TEXT NOT NULL,
    "entity_id" TEXT NOT NULL,
    "role" "MediaRole" NOT NULL,
    "media_id" UUID NOT NULL,
    "assigned_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    -- One holder per (tenant, entity, role): assignRole is an upsert on this key.
    CONSTRAINT "media_role_pkey" PRIMARY KEY ("tenant_id","entity_type","entity_id","role")
);

CREATE UNIQUE INDEX "media_tenant_id_id_key" ON "media"("tenant_id", "id");
CREATE INDEX "media_tenant_id_created_at_id_idx" ON "media"("tenant_id", "created_at" DESC, "id" DESC);
CREATE INDEX "media_tags_idx" ON "media" USING GIN ("tags");
CREATE INDEX "media_attachment_tenant_id_media_id_idx" ON "media_attachment"("tenant_id", "media_id");
CREATE INDEX "media_role_tenant_id_media_id_idx" ON "media_role"("tenant_id", "media_id");

ALTER TABLE "media_attachment" ADD CONSTRAINT "media_attachment_tenant_id_media_id_fkey" FOREIGN KEY ("tenant_id", "media_id") REFERENCES "media"("tenant_id", "id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "media_role" ADD CONSTRAINT "media_role_tenant_id_media_id_fkey" FOREIGN KEY ("tenant_id", "media_id") REFERENCES "media"("tenant_id", "id") ON DELETE CASCADE ON UPDATE CASCADE;
