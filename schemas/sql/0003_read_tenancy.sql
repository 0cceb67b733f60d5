-- Read model of the tenancy projection.
CREATE TABLE read.organizations (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    slug        text        NOT NULL,
    owner_email text,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);

CREATE INDEX organizations_live ON read.organizations (id) WHERE deleted_at IS NULL;
