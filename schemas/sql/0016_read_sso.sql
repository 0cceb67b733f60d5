-- Read model of the tenancy projection for single sign-on: each organization's OpenID Connect
-- configuration (organization.sso_configured / sso_removed). Authentication finds the
-- organization of a token by its issuer and audience here, and its user by email.
CREATE TABLE read.sso_configs (
    org_id          uuid        PRIMARY KEY,
    issuer          text        NOT NULL,
    client_id       text        NOT NULL,
    allowed_domains text[]      NOT NULL,
    groups_claim    text        NOT NULL,
    role_mappings   jsonb       NOT NULL,
    default_role    text,
    version         bigint      NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- A removal keeps the row's version, so an older event replayed never brings it back.
    removed         boolean     NOT NULL DEFAULT false
);
CREATE INDEX sso_configs_by_issuer ON read.sso_configs (issuer, client_id) WHERE NOT removed;

CREATE INDEX users_by_org_email ON read.users (org_id, email);
