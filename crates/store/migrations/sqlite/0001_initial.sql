-- Headway schema, version 1 (SQLite).
CREATE TABLE IF NOT EXISTS users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL DEFAULT '',
    email           TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    provider_id     TEXT,
    profile_pic_url TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_provider_id ON users (provider, provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS preauth_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    prefix      TEXT NOT NULL UNIQUE,
    hash        BLOB NOT NULL,
    user_id     INTEGER REFERENCES users (id) ON DELETE CASCADE,
    reusable    INTEGER NOT NULL,
    ephemeral   INTEGER NOT NULL,
    used        INTEGER NOT NULL,
    expiration  TEXT,
    created_at  TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS nodes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_key     TEXT NOT NULL,
    node_key        TEXT NOT NULL UNIQUE,
    disco_key       TEXT NOT NULL,
    hostname        TEXT NOT NULL,
    given_name      TEXT NOT NULL UNIQUE,
    user_id         INTEGER REFERENCES users (id),
    tags            TEXT NOT NULL DEFAULT '[]',
    ipv4            TEXT UNIQUE,
    ipv6            TEXT UNIQUE,
    endpoints       TEXT NOT NULL DEFAULT '[]',
    hostinfo        TEXT NOT NULL DEFAULT '{}',
    home_derp       INTEGER NOT NULL DEFAULT 0,
    expiry          TEXT,
    register_method TEXT NOT NULL,
    auth_key_id     INTEGER REFERENCES preauth_keys (id) ON DELETE SET NULL,
    ephemeral       INTEGER NOT NULL,
    approved_routes TEXT NOT NULL DEFAULT '[]',
    cap_version     INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    last_seen       TEXT
);
CREATE INDEX IF NOT EXISTS nodes_machine_key ON nodes (machine_key);
CREATE INDEX IF NOT EXISTS nodes_user_id ON nodes (user_id);

CREATE TABLE IF NOT EXISTS policies (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    text        TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
