-- Headway schema, version 6 (PostgreSQL): what an API key is for, and for a
-- key the web console mints at an OIDC sign-in, whose it is (the audit log
-- names that person). Re-runnable: IF NOT EXISTS.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS description TEXT NOT NULL DEFAULT '';
