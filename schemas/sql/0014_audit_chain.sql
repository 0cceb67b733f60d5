-- The tamper-evident audit chain (issue 12). Every row appended to the journal is linked to the
-- previous row of its organization (chain 'platform' for events of no organization) here, in the
-- database, by a trigger: whichever code appends (commands, the gateway's chat events, spool
-- recovery, jobs, a person with psql), the row cannot enter the journal unchained or out of its
-- chain's order. The writer supplies only content_hash, SHA-256 of the canonical envelope
-- (events::audit::content_hash), which the trigger cannot recompute in SQL; a wrong one is found
-- by `aihub audit verify`, which recomputes every hash from the envelope.
ALTER TABLE journal
    ADD COLUMN content_hash bytea,
    ADD COLUMN chain_seq    bigint,
    ADD COLUMN chain_hash   bytea;

-- The head of each chain; its row lock serializes the appends of one organization.
CREATE TABLE audit_chain_heads (
    chain text   PRIMARY KEY,
    seq   bigint NOT NULL,
    hash  bytea  NOT NULL
);

CREATE FUNCTION journal_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    key       text := COALESCE(NEW.org_id::text, 'platform');
    head_seq  bigint;
    head_hash bytea;
BEGIN
    IF NEW.content_hash IS NULL OR length(NEW.content_hash) <> 32 THEN
        RAISE EXCEPTION 'journal row % has no content_hash: every append must carry one', NEW.event_id
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO audit_chain_heads (chain, seq, hash)
        VALUES (key, 0, decode(repeat('00', 32), 'hex'))
        ON CONFLICT (chain) DO NOTHING;
    SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_heads WHERE chain = key FOR UPDATE;
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
    UPDATE audit_chain_heads SET seq = NEW.chain_seq, hash = NEW.chain_hash WHERE chain = key;
    RETURN NEW;
END $$;

CREATE TRIGGER journal_chained BEFORE INSERT ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_chain();

CREATE INDEX journal_by_chain ON journal ((COALESCE(org_id::text, 'platform')), global_position);

-- The audit read model keeps each event's whole envelope (as the topic carried it, chain
-- included), so `GET /audit/logs/{id}` serves it and `aihub audit verify` checks it; the other
-- columns are for filtering, and verify checks they agree with the envelope.
ALTER TABLE read.audit_log
    ADD COLUMN chain_seq  bigint,
    ADD COLUMN chain_hash text,
    ADD COLUMN envelope   jsonb;

DROP INDEX read.audit_log_by_org;
CREATE INDEX audit_log_newest ON read.audit_log (org_id, occurred_at DESC, event_id DESC);
CREATE INDEX audit_log_by_stream ON read.audit_log (stream_id, stream_version);
CREATE INDEX audit_log_by_correlation ON read.audit_log (org_id, correlation_id);
CREATE INDEX audit_log_by_actor ON read.audit_log (org_id, actor_type, actor_id);
CREATE INDEX audit_log_by_chain ON read.audit_log ((COALESCE(org_id::text, 'platform')), chain_seq);
