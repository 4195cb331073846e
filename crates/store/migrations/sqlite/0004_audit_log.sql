-- Headway schema, version 4 (SQLite): the audit log. One row per admin
-- action or node authentication event; `actor` names a key by its public
-- prefix, never by the key. `before`/`after` are JSON text (or NULL).
-- Re-runnable: every statement is IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL DEFAULT '',
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor);
CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action);
