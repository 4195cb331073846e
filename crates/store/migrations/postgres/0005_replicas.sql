-- Headway schema, version 5 (PostgreSQL): the replicas serving this
-- database. Each running `headway serve` keeps its row's `last_seen`
-- fresh; a row that stops moving is a replica that died, and the nodes it
-- held are offline. Re-runnable: IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS replicas (
    id          TEXT PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL
);
