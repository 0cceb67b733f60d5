-- The journal keeps each envelope as the text its writer sent (`json`), no longer parsed into
-- `jsonb` (issue 17). Nothing queries inside the journal's envelopes on a hot path: the relay and
-- the aggregates read them whole, as text, and decode them themselves; the invoicing job and a
-- restore's recount read a few fields, which `json` answers too (`->`, `->>`). Parsing every
-- envelope into `jsonb` on the way in, and printing it back to text on the way out to the relay,
-- was work for nothing on every chat call: 500 chat envelopes (1.2 KB each) took ~8 ms to insert
-- as `jsonb` and ~5 ms as `json`, and ~4-7 ms to read back as text from `jsonb` and ~1-2 ms from
-- `json` (docs/BENCHMARKS.md). `json` still checks each envelope is valid JSON.
ALTER TABLE journal ALTER COLUMN envelope TYPE json USING envelope::json;

-- Rows that arrive unlinked (a restore) get their link as before; the envelope is extended as
-- `jsonb` and stored back as `json`.
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
    NEW.envelope := (NEW.envelope::jsonb || jsonb_build_object('chain', jsonb_build_object(
        'seq', NEW.chain_seq, 'prev', encode(head_hash, 'hex'), 'hash', encode(NEW.chain_hash, 'hex'))))::json;
    PERFORM set_config(setting, NEW.chain_seq || ':' || encode(NEW.chain_hash, 'hex'), true);
    RETURN NEW;
END $$;
