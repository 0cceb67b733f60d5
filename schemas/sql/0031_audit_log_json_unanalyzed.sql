-- ANALYZE leaves the audit log's two JSON columns alone (issue 17). Statistics of a `jsonb`
-- column are of whole values (most common values, a histogram), made by sorting a sample of
-- 30,000 envelopes with jsonb's comparison: nothing we query uses them (filters read fields with
-- `->>`, whose estimates never come from column statistics), and the audit log grows by a row
-- per chat call, so autovacuum analyzes it again every few minutes under load. In a profile of
-- the side-by-side bench at 1,000 calls/s, those analyses were a fifth of Postgres's CPU.
ALTER TABLE read.audit_log
    ALTER COLUMN data SET STATISTICS 0,
    ALTER COLUMN envelope SET STATISTICS 0;
