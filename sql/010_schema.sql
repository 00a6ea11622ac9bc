-- 010_schema: the pgforce schema and the record of installed versions.
--
-- Everything pgforce controls lives in schema pgforce; mapped data tables
-- live in each org's data schema (salesforce by default), created on demand
-- by pgforce.ensure_table. Both install paths (CREATE EXTENSION and
-- `pgforce install`) run exactly this file set, in file-name order.

CREATE SCHEMA IF NOT EXISTS pgforce;

COMMENT ON SCHEMA pgforce IS 'pgforce control plane: mappings, outbox, errors, status. See https://github.com/pgforce/pgforce';

-- `pgforce install` records each version it applied here, so that running
-- it twice changes nothing and a newer binary knows which upgrade steps to
-- run. CREATE EXTENSION leaves it empty: pg_extension is its record.
CREATE TABLE pgforce.schema_version (
    version      text        NOT NULL PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE pgforce.schema_version IS 'Versions applied by `pgforce install` (empty when installed with CREATE EXTENSION).';

-- Shared by every updated_at column below.
CREATE FUNCTION pgforce._touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

-- The session flag that marks the worker's own writes. It is read with
-- missing_ok, so sessions that never set it are user sessions.
CREATE FUNCTION pgforce.origin() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_catalog.current_setting('pgforce.origin', true), '')
$$;

COMMENT ON FUNCTION pgforce.origin() IS 'The writer of the current session: ''salesforce'' for the worker applying Salesforce changes (never captured), '''' for users.';

-- Marks the rest of the transaction as the worker's. Capture ignores its
-- writes (pgforce.origin), and so do the triggers of applications written
-- for Heroku Connect, which tell Connect's writes apart by the xmlbinary
-- setting: 'base64', its default, in users' sessions and something else in
-- Connect's (WHEN (get_xmlbinary() <> 'base64')). TimeZone is UTC because
-- Connect's tables keep datetimes as UTC in columns without a time zone,
-- which the worker compares with Salesforce's times and writes them into.
CREATE FUNCTION pgforce._as_worker() RETURNS void
LANGUAGE sql AS $$
    SELECT pg_catalog.set_config('pgforce.origin', 'salesforce', true),
           pg_catalog.set_config('xmlbinary', 'hex', true),
           pg_catalog.set_config('TimeZone', 'UTC', true)
$$;
