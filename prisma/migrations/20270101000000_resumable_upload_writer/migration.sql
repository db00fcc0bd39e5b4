-- Who wrote a resumable upload's bytes last: the token of the running inspection
-- that saw them on their way in, or another value (a write without one). At
-- completion an inspection is used only when every write since byte 0 was its own;
-- otherwise the stored bytes are read back once and inspected.
ALTER TABLE "resumable_upload" ADD COLUMN "writer" UUID;
