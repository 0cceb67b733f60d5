-- GDPR crypto-shredding (issue 12): the key of each person of an organization. Personal fields of
-- events (emails, names) are sealed with it before they reach the journal and the topic; erasing
-- the person destroys it (key and subject set to NULL), which makes every copy of those fields
-- unreadable without editing an event. `subject` is the keyed blind index of the person's email
-- (HMAC-SHA256 under AIHUB_PERSONAL_DATA_SECRET), never the email. Written in the journal's
-- transactions, so it is write-side data: backed up with the journal. The relay also publishes
-- each key, wrapped under a key derived from AIHUB_PERSONAL_DATA_SECRET, to the compacted topic
-- `<topic>.person-keys`, and a tombstone when it is destroyed (`publish_pending` marks a row whose
-- current state is not published yet), so a restore from the topic has the keys of events
-- written after the last backup.
CREATE TABLE person_keys (
    key_id     uuid PRIMARY KEY,
    org_id     uuid NOT NULL,
    subject    text,
    key        bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    publish_pending boolean NOT NULL DEFAULT true,
    CHECK ((key IS NULL) = (erased_at IS NOT NULL)),
    CHECK ((subject IS NULL) = (erased_at IS NOT NULL))
);

CREATE UNIQUE INDEX person_keys_by_subject ON person_keys (org_id, subject) WHERE subject IS NOT NULL;

CREATE INDEX person_keys_to_publish ON person_keys (key_id) WHERE publish_pending;
