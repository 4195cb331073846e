-- Headway schema, version 2 (SQLite): admin API keys.
-- The secret is never stored: `hash` is the SHA-256 of its secret part.
CREATE TABLE IF NOT EXISTS api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    prefix      TEXT NOT NULL UNIQUE,
    hash        BLOB NOT NULL,
    expiration  TEXT,
    created_at  TEXT NOT NULL,
    last_seen   TEXT
);
