-- Headway schema, version 2 (PostgreSQL): admin API keys.
-- The secret is never stored: `hash` is the SHA-256 of its secret part.
CREATE TABLE IF NOT EXISTS api_keys (
    id          BIGSERIAL PRIMARY KEY,
    prefix      TEXT NOT NULL UNIQUE,
    hash        BYTEA NOT NULL,
    expiration  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ
);
