-- The audit chain's head moves once per statement, not once per row (issue 17: the gateway's
-- batches of chat events). Updating the head row for every appended row made one batch of N
-- rows write N versions of that row in one transaction, each found by walking the versions
-- before it; appends of 500 rows took about twice as long as with this scheme (measured in
-- docs/BENCHMARKS.md, "Journal appends and the chain's head").
--
-- The row trigger now reads the head from the table once per chain and statement (under the
-- lock `Journal::append` takes, or the FOR UPDATE below), and carries it from row to row in a
-- transaction-local setting; a statement trigger then writes each chain's last link to
-- `audit_chain_heads` and clears the settings, so the next statement reads the table again. A
-- savepoint rolled back takes its settings with it. Linking is unchanged: the same seq, prev
-- and hash as 0014 computed, which `aihub audit verify` checks.
CREATE OR REPLACE FUNCTION journal_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key       text := COALESCE(NEW.org_id::text, 'platform');
    setting   text := 'aihub_chain.h' || replace(COALESCE(NEW.org_id::text, 'platform'), '-', '');
    carried   text;
    head_seq  bigint;
    head_hash bytea;
BEGIN
    IF NEW.content_hash IS NULL OR length(NEW.content_hash) <> 32 THEN
        RAISE EXCEPTION 'journal row % has no content_hash: every append must carry one', NEW.event_id
            USING ERRCODE = 'check_violation';
    END IF;
    carried := current_setting(setting, true);
    IF carried IS NULL OR carried = '' THEN
        INSERT INTO audit_chain_heads (chain, seq, hash)
            VALUES (key, 0, decode(repeat('00', 32), 'hex'))
            ON CONFLICT (chain) DO NOTHING;
        SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_heads WHERE chain = key FOR UPDATE;
    ELSE
        head_seq := split_part(carried, ':', 1)::bigint;
        head_hash := decode(split_part(carried, ':', 2), 'hex');
    END IF;
    -- Under the head's lock, so a row committed by a writer we waited for is seen. A row already
    -- there is skipped rather than chained twice: ON CONFLICT would otherwise skip it only after
    -- this trigger had advanced the head. Journal::append counts its rows and answers a conflict.
    IF EXISTS (SELECT 1 FROM journal WHERE event_id = NEW.event_id
               OR (stream_id = NEW.stream_id AND stream_version = NEW.stream_version)) THEN
        RETURN NULL;
    END IF;
    NEW.chain_seq := head_seq + 1;
    NEW.chain_hash := sha256(head_hash || NEW.content_hash);
    NEW.envelope := NEW.envelope || jsonb_build_object('chain', jsonb_build_object(
        'seq', NEW.chain_seq, 'prev', encode(head_hash, 'hex'), 'hash', encode(NEW.chain_hash, 'hex')));
    PERFORM set_config(setting, NEW.chain_seq || ':' || encode(NEW.chain_hash, 'hex'), true);
    RETURN NEW;
END $$;

CREATE FUNCTION journal_chain_heads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_chain_heads h SET seq = n.chain_seq, hash = n.chain_hash
    FROM (SELECT DISTINCT ON (COALESCE(org_id::text, 'platform'))
                 COALESCE(org_id::text, 'platform') AS chain, chain_seq, chain_hash
          FROM appended
          ORDER BY COALESCE(org_id::text, 'platform'), chain_seq DESC) n
    WHERE h.chain = n.chain;
    PERFORM set_config('aihub_chain.h' || replace(n.chain, '-', ''), '', true)
    FROM (SELECT DISTINCT COALESCE(org_id::text, 'platform') AS chain FROM appended) n;
    RETURN NULL;
END $$;

CREATE TRIGGER journal_chain_heads AFTER INSERT ON journal
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION journal_chain_heads();
