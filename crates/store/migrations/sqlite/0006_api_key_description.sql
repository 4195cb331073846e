-- Headway schema, version 6 (SQLite): what an API key is for, and for a key
-- the web console mints at an OIDC sign-in, whose it is (the audit log
-- names that person). Applied once, in a transaction, by the migrator.
ALTER TABLE api_keys ADD COLUMN description TEXT NOT NULL DEFAULT '';
