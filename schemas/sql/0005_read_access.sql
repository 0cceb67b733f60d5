-- Read models of the tenancy projection for access control: users, role assignments, teams,
-- team members and API keys. Authentication reads read.api_keys and read.role_assignments.

CREATE TABLE read.users (
    id         uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    email      text        NOT NULL,
    name       text,
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX users_by_org ON read.users (org_id, id);

-- team_id is the nil UUID for a role held in the whole organization.
CREATE TABLE read.role_assignments (
    org_id      uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    role        text        NOT NULL,
    team_id     uuid        NOT NULL,
    assigned_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, role, team_id)
);
CREATE INDEX role_assignments_by_org ON read.role_assignments (org_id, role);

CREATE TABLE read.teams (
    id          uuid        PRIMARY KEY,
    org_id      uuid        NOT NULL,
    name        text        NOT NULL,
    description text,
    version     bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX teams_by_org ON read.teams (org_id, id);

CREATE TABLE read.team_members (
    team_id  uuid        NOT NULL,
    user_id  uuid        NOT NULL,
    org_id   uuid        NOT NULL,
    added_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id)
);

CREATE TABLE read.api_keys (
    id            uuid        PRIMARY KEY,
    org_id        uuid        NOT NULL,
    public_id     text        NOT NULL UNIQUE,
    prefix        text        NOT NULL,
    secret_sha256 text        NOT NULL,
    name          text        NOT NULL,
    owner_user_id uuid,
    team_id       uuid,
    permissions   text[]      NOT NULL,
    enabled       boolean     NOT NULL DEFAULT true,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX api_keys_by_org ON read.api_keys (org_id, id);
