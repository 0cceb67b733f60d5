-- The audit log's two JSON columns compressed with lz4 instead of pglz (issue 17). An audit row
-- carries the envelope and its data, over Postgres' two-kilobyte threshold for a chat call, so
-- every insert compressed them; pglz made an insert of 5,000 chat rows take 260-300 ms, lz4 120
-- ms, storing them uncompressed 150-180 ms (measured on the bench's rows). Rows written before
-- keep their pglz values: Postgres reads either. A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE read.audit_log ALTER COLUMN envelope SET COMPRESSION lz4,
                               ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not supported by this server; the audit log keeps pglz';
END $$;
