-- One row per tag of each live media, in the order searches page in (SPEC 14): the
-- newest media carrying a tag is the first entry of its (tenant, tag) range, so a
-- page of a single-tag or match-any search reads about a page of index entries,
-- however many media carry the tag. Kept by a trigger on media, so every write
-- path (upload, replaceMediaTags, soft delete, raw SQL) keeps it in step; purged
-- media leave it by the foreign key's cascade.
CREATE TABLE "media_tag" (
    "tenant_id" TEXT NOT NULL,
    "tag" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,
    "media_id" UUID NOT NULL,

    CONSTRAINT "media_tag_pkey" PRIMARY KEY ("tenant_id", "tag", "created_at", "media_id")
);

CREATE INDEX "media_tag_tenant_id_media_id_idx" ON "media_tag"("tenant_id", "media_id");
ALTER TABLE "media_tag" ADD CONSTRAINT "media_tag_tenant_id_media_id_fkey" FOREIGN KEY ("tenant_id", "media_id") REFERENCES "media"("tenant_id", "id") ON DELETE CASCADE ON UPDATE CASCADE;

CREATE FUNCTION media_tag_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.tags IS NOT DISTINCT FROM OLD.tags AND NEW.deleted_at IS NOT DISTINCT FROM OLD.deleted_at AND NEW.created_at = OLD.created_at THEN
      RETURN NULL;
    END IF;
    DELETE FROM media_tag WHERE tenant_id = OLD.tenant_id AND media_id = OLD.id;
  END IF;
  IF NEW.deleted_at IS NULL THEN
    INSERT INTO media_tag (tenant_id, tag, created_at, media_id)
    SELECT DISTINCT NEW.tenant_id, t, NEW.created_at, NEW.id FROM unnest(NEW.tags) AS t;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER media_tag_sync AFTER INSERT OR UPDATE OF tags, deleted_at, created_at ON media
  FOR EACH ROW EXECUTE FUNCTION media_tag_sync();

INSERT INTO media_tag (tenant_id, tag, created_at, media_id)
SELECT DISTINCT m.tenant_id, t, m.created_at, m.id FROM media m CROSS JOIN LATERAL unnest(m.tags) AS t WHERE m.deleted_at IS NULL;
