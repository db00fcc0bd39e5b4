-- Which key encrypted a media, beyond its name: KeyRing.fingerprint() of the ring
-- key `encryption_key_id` named when its objects were written (16 hex characters
-- derived from the key material, HKDF with its own purpose). Two rings can hold
-- different keys under one name (two instances that each generated a key on the
-- same day); a read whose ring key has another fingerprint is reported as a key
-- mismatch, not as corrupt content. NULL for unencrypted media, and for media
-- encrypted before this migration until a start fills it in where the row's
-- sealed checksum opens under the ring's key of that name (proof it is that key).
ALTER TABLE "media" ADD COLUMN "encryption_key_fp" TEXT;
ALTER TABLE "media" ADD CONSTRAINT "media_encryption_key_fp_check"
  CHECK ("encryption_key_fp" IS NULL OR ("encrypted" AND "encryption_key_fp" ~ '^[0-9a-f]{16}$'));
