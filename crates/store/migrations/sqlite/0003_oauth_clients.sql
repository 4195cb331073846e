-- Headway schema, version 3 (SQLite): OAuth clients of the v2 API.
-- `prefix` is the public client id; `hash` the SHA-256 of the secret part.
-- Their access tokens are short-lived and kept in memory only.
CREATE TABLE IF NOT EXISTS oauth_clients (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    prefix      TEXT NOT NULL UNIQUE,
    hash        BLOB NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    scopes      TEXT NOT NULL DEFAULT '[]',
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL
);
