-- The journal's writer links its rows to the audit chain (issue 17): `Journal::append` holds
-- the chains' heads (FOR UPDATE) and computes each row's seq, hash and envelope `chain` itself,
-- the same links the row trigger computed, without a PL/pgSQL call, a duplicate probe, a jsonb
-- rewrite and two settings per row. The trigger stays for rows that arrive unlinked (a restore
-- from the topic, or a backup's rows from before the chain). Appending 500 chat events: see docs/BENCHMARKS.md.
--
-- What the database no longer computes it checks, once per statement, over the transition
-- table: every appended row links to the one before it in its chain, the first to the stored
-- head (seq one more, hash = sha256(prev hash || content hash)). A writer that got the chain
-- wrong fails its statement, and nothing of it is written.
DROP TRIGGER journal_chained ON journal;
CREATE TRIGGER journal_chained BEFORE INSERT ON journal
    FOR EACH ROW WHEN (NEW.chain_seq IS NULL) EXECUTE FUNCTION journal_chain();

CREATE OR REPLACE FUNCTION journal_chain_heads() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken uuid;
BEGIN
    SELECT a.event_id INTO broken
    FROM (SELECT event_id, chain_seq, chain_hash, content_hash,
                 COALESCE(org_id::text, 'platform') AS chain,
                 lag(chain_seq) OVER w AS prev_seq,
                 lag(chain_hash) OVER w AS prev_hash
          FROM appended
          WINDOW w AS (PARTITION BY COALESCE(org_id::text, 'platform') ORDER BY chain_seq)) a
    LEFT JOIN audit_chain_heads h ON h.chain = a.chain
    WHERE a.chain_seq IS DISTINCT FROM COALESCE(a.prev_seq, h.seq, 0) + 1
       OR a.chain_hash IS DISTINCT FROM
          sha256(COALESCE(a.prev_hash, h.hash, decode(repeat('00', 32), 'hex')) || a.content_hash)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal row % does not link to the head of its audit chain', broken
            USING ERRCODE = 'check_violation';
    END IF;
    -- Upserted: rows loaded linked (a backup's) may start a chain no head row exists for yet.
    INSERT INTO audit_chain_heads (chain, seq, hash)
    SELECT DISTINCT ON (COALESCE(org_id::text, 'platform'))
           COALESCE(org_id::text, 'platform'), chain_seq, chain_hash
    FROM appended
    ORDER BY COALESCE(org_id::text, 'platform'), chain_seq DESC
    ON CONFLICT (chain) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash;
    PERFORM set_config('aihub_chain.h' || replace(n.chain, '-', ''), '', true)
    FROM (SELECT DISTINCT COALESCE(org_id::text, 'platform') AS chain FROM appended) n;
    RETURN NULL;
END $$;
