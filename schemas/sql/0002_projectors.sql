-- Where each projection is in each partition of the topic. Written in the same transaction as
-- the read-model changes of the batch, so a crash never applies a batch without its offsets.
CREATE TABLE projector_offsets (
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

-- Which events each projection has applied: the relay may publish an event twice, and the
-- second copy is skipped by its event_id.
CREATE TABLE projector_applied (
    projection text NOT NULL,
    event_id   uuid NOT NULL,
    PRIMARY KEY (projection, event_id)
);

CREATE SCHEMA IF NOT EXISTS read;
