-- Headway schema, version 1 (PostgreSQL).
CREATE TABLE IF NOT EXISTS users (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL DEFAULT '',
    email           TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    provider_id     TEXT,
    profile_pic_url TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_provider_id ON users (provider, provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS preauth_keys (
    id          BIGSERIAL PRIMARY KEY,
    prefix      TEXT NOT NULL UNIQUE,
    hash        BYTEA NOT NULL,
    user_id     BIGINT REFERENCES users (id) ON DELETE CASCADE,
    reusable    BOOLEAN NOT NULL,
    ephemeral   BOOLEAN NOT NULL,
    used        BOOLEAN NOT NULL,
    expiration  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS nodes (
    id              BIGSERIAL PRIMARY KEY,
    machine_key     TEXT NOT NULL,
    node_key        TEXT NOT NULL UNIQUE,
    disco_key       TEXT NOT NULL,
    hostname        TEXT NOT NULL,
    given_name      TEXT NOT NULL UNIQUE,
    user_id         BIGINT REFERENCES users (id),
    tags            TEXT NOT NULL DEFAULT '[]',
    ipv4            TEXT UNIQUE,
    ipv6            TEXT UNIQUE,
    endpoints       TEXT NOT NULL DEFAULT '[]',
    hostinfo        TEXT NOT NULL DEFAULT '{}',
    home_derp       INTEGER NOT NULL DEFAULT 0,
    expiry          TIMESTAMPTZ,
    register_method TEXT NOT NULL,
    auth_key_id     BIGINT REFERENCES preauth_keys (id) ON DELETE SET NULL,
    ephemeral       BOOLEAN NOT NULL,
    approved_routes TEXT NOT NULL DEFAULT '[]',
    cap_version     INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    last_seen       TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS nodes_machine_key ON nodes (machine_key);
CREATE INDEX IF NOT EXISTS nodes_user_id ON nodes (user_id);

CREATE TABLE IF NOT EXISTS policies (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    text        TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
