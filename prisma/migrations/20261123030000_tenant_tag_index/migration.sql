-- Tag search within one tenant (SPEC 14). The GIN index on tags alone answered
-- "which rows carry this tag" for every tenant at once: a tag frequent for other
-- tenants made a search of it visit all their rows, and several frequent tags
-- were intersected over whole posting lists. The index now holds tenant-scoped
-- keys ("tenant<US>tag", US = the 0x1F unit separator, which a tag cannot contain),
-- so its posting lists are one tenant's. Queries use the same function:
--   media_tenant_tags(m.tenant_id, m.tags) @> media_tenant_tags($tenant, $tags)
CREATE FUNCTION media_tenant_tags(tenant TEXT, tags TEXT[]) RETURNS TEXT[]
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT ARRAY(SELECT tenant || chr(31) || t FROM unnest(tags) AS t) $$;

CREATE INDEX "media_tenant_tags_idx" ON "media" USING GIN (media_tenant_tags("tenant_id", "tags"));
DROP INDEX "media_tags_idx";
