-- A chat call's audit row keeps its envelope once, as written (issue 17). The audit row is the
-- largest write of a chat call, and chat calls are most of the log: 500 of them took 18-27 ms
-- to insert as they were, 11-17 ms without the `data` column and with the envelope as `json`
-- (measured on the side-by-side bench's rows; docs/BENCHMARKS.md, session 14):
--  * `data` is left NULL for chat calls (their data is the envelope's `data`); every other
--    event keeps it, for the queries that read their fields (compliance reports, exports,
--    update diffs), and rows written before keep theirs;
--  * the envelope is stored as `json`, the text as the projection serialized it, checked but not
--    converted to `jsonb`'s binary form on every insert. Reads take fields with `->`, which
--    `json` has too; nothing queries the envelope's insides in bulk.
-- Rewrites the table once.
ALTER TABLE read.audit_log ALTER COLUMN data DROP NOT NULL;
ALTER TABLE read.audit_log ALTER COLUMN envelope TYPE json USING envelope::json;
DO $$
BEGIN
    ALTER TABLE read.audit_log ALTER COLUMN envelope SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not supported by this server; the audit log keeps pglz';
END $$;
ALTER TABLE read.audit_log ALTER COLUMN envelope SET STATISTICS 0;
