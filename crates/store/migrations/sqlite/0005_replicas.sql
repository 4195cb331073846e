-- Headway schema, version 5 (SQLite): the replicas serving this database.
-- Only PostgreSQL deployments run several replicas; the table exists here
-- too so both schemas stay the same. Re-runnable: IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS replicas (
    id          TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
