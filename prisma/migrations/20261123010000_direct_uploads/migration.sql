-- Direct (browser-to-storage) uploads. The row's id is also the id of the media it
-- becomes, so the object is written once under {tenant}/{id}/original.
CREATE TABLE "direct_upload" (
    "id" UUID NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "storage_key" TEXT NOT NULL,
    "file_name" TEXT NOT NULL,
    "content_type" TEXT NOT NULL,
    "byte_size" BIGINT NOT NULL,
    "checksum" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "completed_at" TIMESTAMPTZ(3),

    CONSTRAINT "direct_upload_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "direct_upload_tenant_id_id_key" ON "direct_upload"("tenant_id", "id");
-- The sweep looks for expired or finished uploads.
CREATE INDEX "direct_upload_expires_at_idx" ON "direct_upload"("expires_at");
CREATE INDEX "media_deleted_at_idx" ON "media"("deleted_at") WHERE "deleted_at" IS NOT NULL;
