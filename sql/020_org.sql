-- 020_org: one row per Salesforce org.
--
-- Holds no secrets: credentials come only from the worker's environment, so
-- that a pg_dump or a read-only role never exposes them.

CREATE TABLE pgforce.org (
    name           text        NOT NULL PRIMARY KEY,
    schema_name    text        NOT NULL DEFAULT 'salesforce',
    api_version    text        NOT NULL DEFAULT '62.0',
    api_budget_pct integer     NOT NULL DEFAULT 50,
    paused         boolean     NOT NULL DEFAULT false,
    -- How long resolved errors and past drift checks are kept (see
    -- pgforce.prune_history); NULL: for ever.
    history_retention interval DEFAULT '31 days',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT org_name_valid CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    CONSTRAINT org_schema_name_valid CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$' AND schema_name <> 'pgforce' AND schema_name !~ '^pg_'),
    CONSTRAINT org_api_version_valid CHECK (api_version ~ '^[1-9][0-9]\.0$'),
    CONSTRAINT org_api_budget_pct_range CHECK (api_budget_pct BETWEEN 1 AND 100),
    CONSTRAINT org_history_retention_floor CHECK (history_retention IS NULL OR history_retention >= interval '1 hour')
);

COMMENT ON TABLE pgforce.org IS 'Salesforce orgs. Credentials are never stored here: the worker reads them from its environment.';
COMMENT ON COLUMN pgforce.org.schema_name IS 'Schema of the org''s mapped tables.';
COMMENT ON COLUMN pgforce.org.history_retention IS 'How long resolved errors and past drift checks are kept (default 31 days, at least 1 hour); NULL: for ever.';
COMMENT ON COLUMN pgforce.org.api_budget_pct IS 'Share (1-100) of the org''s daily API allocation the worker may spend.';

-- Explains a refused org row; the named CHECK constraints stay as the
-- backstop, but their generic message does not say how to fix the row.
CREATE FUNCTION pgforce._org_validate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name IS NULL OR NEW.name !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'pgforce: invalid org name %', pg_catalog.quote_nullable(NEW.name)
            USING ERRCODE = 'check_violation',
                  HINT = 'Use 1-40 lower-case letters, digits or underscores, starting with a letter, e.g. ''default'' or ''sandbox''.';
    END IF;
    IF NEW.schema_name IS NULL OR NEW.schema_name !~ '^[a-z_][a-z0-9_]{0,62}$' OR NEW.schema_name = 'pgforce' OR NEW.schema_name ~ '^pg_' THEN
        RAISE EXCEPTION 'pgforce: invalid schema_name % for org %', pg_catalog.quote_nullable(NEW.schema_name), NEW.name
            USING ERRCODE = 'check_violation',
                  HINT = 'Use a lower-case Postgres identifier other than pgforce and not starting with pg_, e.g. ''salesforce''.';
    END IF;
    IF NEW.api_version IS NULL OR NEW.api_version !~ '^[1-9][0-9]\.0$' THEN
        RAISE EXCEPTION 'pgforce: invalid api_version % for org %', pg_catalog.quote_nullable(NEW.api_version), NEW.name
            USING ERRCODE = 'check_violation',
                  HINT = 'Give a Salesforce REST API version like ''62.0''.';
    END IF;
    IF NEW.api_budget_pct IS NULL OR NEW.api_budget_pct NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'pgforce: api_budget_pct % of org % is out of range', coalesce(NEW.api_budget_pct::text, 'NULL'), NEW.name
            USING ERRCODE = 'check_violation',
                  HINT = 'Give the percentage (1-100) of the org''s daily API calls the worker may use; the default is 50.';
    END IF;
    IF NEW.history_retention < interval '1 hour' THEN
        RAISE EXCEPTION 'pgforce: history_retention % of org % is below the 1 hour floor', NEW.history_retention, NEW.name
            USING ERRCODE = 'check_violation',
                  HINT = 'Give how long to keep resolved errors and past drift checks, e.g. ''31 days'' (the default), or NULL to keep them for ever.';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.schema_name IS DISTINCT FROM OLD.schema_name THEN
        -- Nested so that the INSERT of the default row at install, before
        -- pgforce.mapping exists, never plans this query.
        IF EXISTS (SELECT FROM pgforce.mapping m WHERE m.org = OLD.name) THEN
            RAISE EXCEPTION 'pgforce: cannot move org % from schema % to % while it has mappings', NEW.name, OLD.schema_name, NEW.schema_name
                USING ERRCODE = 'object_in_use',
                      HINT = 'Delete the org''s mappings first, or create a new org for the new schema.';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER org_validate BEFORE INSERT OR UPDATE ON pgforce.org
    FOR EACH ROW EXECUTE FUNCTION pgforce._org_validate();
CREATE TRIGGER org_touch BEFORE UPDATE ON pgforce.org
    FOR EACH ROW EXECUTE FUNCTION pgforce._touch();

-- An org's resume stamps resumed_at on its mappings not paused on their
-- own, as pgforce.resume does, so that the outbound side checks their
-- first updates against Salesforce's edits made meanwhile (see
-- checkCatchUp in worker/outbound). The worker cannot rely on seeing the
-- pause: a pause and resume between two of its cycles leave no paused
-- state behind.
CREATE FUNCTION pgforce._org_resumed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgforce.mapping m SET resumed_at = pg_catalog.now() WHERE m.org = NEW.name AND NOT m.paused;
    RETURN NULL;
END
$$;

CREATE TRIGGER org_resumed AFTER UPDATE OF paused ON pgforce.org
    FOR EACH ROW WHEN (OLD.paused AND NOT NEW.paused) EXECUTE FUNCTION pgforce._org_resumed();

-- Explains the refusal to delete an org that mappings still use, which
-- the foreign key of pgforce.mapping.org gave bare. A mapping cannot move
-- to another org once its table exists, so the way out is to delete them.
-- The code is the foreign key's, for programs that look for it.
CREATE FUNCTION pgforce._org_in_use() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_count    bigint;
    v_mappings text;
BEGIN
    SELECT pg_catalog.count(*), pg_catalog.string_agg(pg_catalog.format('%s (%s)', m.id, m.sobject), ', ' ORDER BY m.id)
    INTO v_count, v_mappings
    FROM pgforce.mapping m WHERE m.org = OLD.name;
    IF v_count > 0 THEN
        RAISE EXCEPTION 'pgforce: org % still has % mapping(s), so it cannot be deleted', OLD.name, v_count
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Mappings of the org: ' || v_mappings || '.',
                  HINT = pg_catalog.format('Delete its mappings first (their tables stay, as plain tables, and changes not yet sent to Salesforce are dropped): DELETE FROM pgforce.mapping WHERE org = %L; then DELETE FROM pgforce.org WHERE name = %L;',
                                           OLD.name, OLD.name);
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER org_in_use BEFORE DELETE ON pgforce.org
    FOR EACH ROW EXECUTE FUNCTION pgforce._org_in_use();

INSERT INTO pgforce.org (name) VALUES ('default');
