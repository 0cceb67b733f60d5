-- Read model of the catalog projection: the models imported by `aihub models sync`, from
-- catalog.synced events. Each event carries the provider's whole imported list.
CREATE TABLE read.catalog_models (
    provider               text        NOT NULL,
    name                   text        NOT NULL,
    upstream_model         text        NOT NULL,
    context_length         bigint      NOT NULL,
    input_micros_per_mtok  bigint      NOT NULL,
    output_micros_per_mtok bigint      NOT NULL,
    tier                   text        NOT NULL,
    -- The catalog stream's version and time of the sync that last wrote the row.
    version                bigint      NOT NULL,
    synced_at              timestamptz NOT NULL,
    PRIMARY KEY (provider, name)
);
