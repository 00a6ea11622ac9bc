-- 040_table: mapped data tables, laid out like Heroku Connect's.
--
-- The worker calls pgforce.ensure_table after describing the object. The
-- table keeps Heroku Connect's system columns and index names so that
-- applications written against Connect keep working, but types are exact:
-- numbers are numeric(precision, scale), never double precision.

-- The Postgres type of one described Salesforce field, in format_type()'s
-- spelling so that it compares equal to the catalog.
CREATE FUNCTION pgforce._column_type(p_column jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_type      text    := pg_catalog.lower(p_column ->> 'type');
    v_length    integer := coalesce((p_column ->> 'length')::integer, 0);
    v_precision integer := coalesce((p_column ->> 'precision')::integer, 0);
    v_scale     integer := coalesce((p_column ->> 'scale')::integer, 0);
BEGIN
    CASE v_type
    WHEN 'currency', 'percent', 'double' THEN
        IF v_precision = 0 THEN
            RETURN 'numeric';
        END IF;
        IF v_precision NOT BETWEEN 1 AND 1000 OR v_scale NOT BETWEEN 0 AND v_precision THEN
            RAISE EXCEPTION 'pgforce: field % has precision % and scale %, which numeric cannot hold', p_column ->> 'name', v_precision, v_scale
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass the precision and scale from the describe result (0 <= scale <= precision <= 1000).';
        END IF;
        RETURN pg_catalog.format('numeric(%s,%s)', v_precision, v_scale);
    WHEN 'int' THEN
        RETURN 'integer';
    WHEN 'long' THEN
        RETURN 'bigint';
    WHEN 'datetime' THEN
        RETURN 'timestamp with time zone';
    WHEN 'date' THEN
        RETURN 'date';
    WHEN 'time' THEN
        RETURN 'time without time zone';
    WHEN 'boolean' THEN
        RETURN 'boolean';
    WHEN 'id', 'reference' THEN
        RETURN 'character varying(18)';
    WHEN 'string', 'picklist', 'combobox', 'email', 'phone', 'url', 'encryptedstring', 'textarea' THEN
        -- Long and rich text areas are textarea with a length above 255.
        IF v_length <= 0 OR (v_type = 'textarea' AND v_length > 255) THEN
            RETURN 'text';
        END IF;
        RETURN pg_catalog.format('character varying(%s)', v_length);
    WHEN 'multipicklist', 'base64', 'anytype' THEN
        RETURN 'text';
    WHEN 'address', 'location' THEN
        RETURN 'jsonb';
    ELSE
        RAISE EXCEPTION 'pgforce: field % has unknown Salesforce type %', p_column ->> 'name', pg_catalog.quote_nullable(p_column ->> 'type')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the "type" of the field from the describe result, e.g. string, double, currency, reference, datetime.';
    END CASE;
END
$$;

-- Heroku Connect's SystemModstamp index of a mapped table: its name, and
-- the statement that builds it when it is missing (ensure_table at
-- creation; an initial load that left it out for speed, 110_inbound).
CREATE FUNCTION pgforce._modstamp_index_name(p_table_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'hc_idx_' || p_table_name || '_systemmodstamp'
$$;

CREATE FUNCTION pgforce._create_modstamp_index(p_schema text, p_table_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (systemmodstamp)',
        pgforce._modstamp_index_name(p_table_name), p_schema, p_table_name);
END
$$;

-- Gives a table that existed before its mapping (one the user prepared
-- with columns of their own) the columns and indexes pgforce syncs with,
-- those ensure_table creates a new table with; a table kept from Heroku
-- Connect has them all. Without them the first load failed, and again on
-- every retry, with "column sfid does not exist". New columns are nullable
-- (isdeleted's default is a constant), so adding them rewrites nothing;
-- the unique index on sfid reads the table once. id is every row's key
-- for pgforce (capture pairs old and new rows by it, the worker writes
-- results back by it), and adding one to a table that has rows would
-- rewrite it, which is the user's call, so its absence is refused; so is an
-- id without a default, since the worker inserts rows without one.
CREATE FUNCTION pgforce._add_sync_columns(p_table regclass, p_table_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_column record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = p_table AND a.attname = 'id' AND NOT a.attisdropped
                     AND a.atttypid IN ('integer'::regtype, 'bigint'::regtype)
                     AND (a.atthasdef OR a.attidentity <> '')) THEN
        RAISE EXCEPTION 'pgforce: table % has no integer column id that numbers new rows, which pgforce keys its rows by', p_table
            USING ERRCODE = 'invalid_table_definition',
                  HINT = pg_catalog.format('Add one with ALTER TABLE %s ADD COLUMN id serial PRIMARY KEY; (or rename the table''s own key to id), or delete the table and let pgforce create it.', p_table);
    END IF;
    FOR v_column IN
        SELECT c.name, c.type FROM (VALUES
            (1, 'sfid', 'character varying(18)'),
            (2, 'systemmodstamp', 'timestamp with time zone'),
            (3, 'isdeleted', 'boolean DEFAULT false'),
            (4, 'createddate', 'timestamp with time zone'),
            (5, '_hc_lastop', 'character varying(32)'),
            (6, '_hc_err', 'text')) AS c(i, name, type)
        WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = p_table AND a.attname = c.name AND NOT a.attisdropped)
        ORDER BY c.i
    LOOP
        -- v_column.type is one of the fixed spellings above.
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN %I %s', p_table, v_column.name, v_column.type);
    END LOOP;
    -- The merge's ON CONFLICT (sfid) needs a unique index on sfid alone.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_index i
                   WHERE i.indrelid = p_table AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                     AND i.indnatts = 1 AND i.indkey[0] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
                                                           WHERE a.attrelid = p_table AND a.attname = 'sfid')) THEN
        EXECUTE pg_catalog.format('CREATE UNIQUE INDEX %I ON %s (sfid)', 'hcu_idx_' || p_table_name || '_sfid', p_table);
    END IF;
    PERFORM pgforce._create_modstamp_index((SELECT n.nspname FROM pg_catalog.pg_class c
                                            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                            WHERE c.oid = p_table), p_table_name);
END
$$;

-- Creates or alters the mapping's table to hold p_columns, an array of
-- {"name","type","length","precision","scale"} objects from describe, and
-- returns the names of the columns it added. New fields become nullable
-- columns without a default, which Postgres adds without rewriting the table;
-- lock_timeout keeps the ALTER from queueing behind long transactions (the
-- worker retries) instead of blocking every reader and writer behind it.
CREATE FUNCTION pgforce.ensure_table(p_mapping_id integer, p_columns jsonb) RETURNS text[]
LANGUAGE plpgsql
SET lock_timeout = '5s'
AS $$
DECLARE
    v_mapping  pgforce.mapping;
    v_schema   text;
    v_table    regclass;
    v_column   jsonb;
    v_name     text;
    v_field    text;
    v_type     text;
    v_existing text;
    v_added    text[] := '{}';
BEGIN
    SELECT * INTO v_mapping FROM pgforce.mapping m WHERE m.id = p_mapping_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgforce: no mapping with id %', p_mapping_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'List the mappings with SELECT id, sobject FROM pgforce.mapping.';
    END IF;
    IF p_columns IS NULL OR pg_catalog.jsonb_typeof(p_columns) <> 'array' THEN
        RAISE EXCEPTION 'pgforce: columns for % must be a JSON array, got %', v_mapping.sobject, coalesce(pg_catalog.jsonb_typeof(p_columns), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass [{"name":"Name","type":"string","length":255}, ...] from the describe result.';
    END IF;
    SELECT o.schema_name INTO STRICT v_schema FROM pgforce.org o WHERE o.name = v_mapping.org;

    -- CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent creator
    -- (two mappings of one org set up at once): serialize on the schema name.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgforce.schema:' || v_schema));
    EXECUTE pg_catalog.format('CREATE SCHEMA IF NOT EXISTS %I', v_schema);
    v_table := pg_catalog.to_regclass(pg_catalog.format('%I.%I', v_schema, v_mapping.table_name));
    IF v_table IS NULL THEN
        EXECUTE pg_catalog.format(
            'CREATE TABLE %I.%I ('
            ' id serial PRIMARY KEY,'
            ' sfid character varying(18),'
            ' systemmodstamp timestamp with time zone,'
            ' isdeleted boolean DEFAULT false,'
            ' createddate timestamp with time zone,'
            ' _hc_lastop character varying(32),'
            ' _hc_err text)',
            v_schema, v_mapping.table_name);
        EXECUTE pg_catalog.format('CREATE UNIQUE INDEX %I ON %I.%I (sfid)',
            'hcu_idx_' || v_mapping.table_name || '_sfid', v_schema, v_mapping.table_name);
        PERFORM pgforce._create_modstamp_index(v_schema, v_mapping.table_name);
        EXECUTE pg_catalog.format('COMMENT ON TABLE %I.%I IS %L', v_schema, v_mapping.table_name,
            pg_catalog.format('Salesforce %s, synced by pgforce mapping %s (%s). Do not TRUNCATE; see pgforce.status.',
                v_mapping.sobject, v_mapping.id, v_mapping.mode));
        v_table := pg_catalog.to_regclass(pg_catalog.format('%I.%I', v_schema, v_mapping.table_name));
    ELSE
        PERFORM pgforce._add_sync_columns(v_table, v_mapping.table_name);
    END IF;

    FOR v_column IN SELECT c FROM pg_catalog.jsonb_array_elements(p_columns) c LOOP
        v_field := v_column ->> 'name';
        IF v_field IS NULL OR NOT pgforce._is_api_name(v_field) THEN
            RAISE EXCEPTION 'pgforce: column entry % of % has no valid Salesforce field name', v_column, v_mapping.sobject
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Each entry needs "name" set to the field''s API name.';
        END IF;
        -- System fields already have their Heroku Connect columns.
        CONTINUE WHEN pg_catalog.lower(v_field) = ANY (ARRAY['id', 'systemmodstamp', 'isdeleted', 'createddate']);
        IF NOT pg_catalog.lower(v_field) IN (SELECT pg_catalog.lower(f) FROM pg_catalog.unnest(v_mapping.fields) f) THEN
            RAISE EXCEPTION 'pgforce: field % is not in the fields of mapping % (%)', v_field, v_mapping.id, v_mapping.sobject
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Add it to pgforce.mapping.fields first, or leave it out of the columns.';
        END IF;
        v_name := pg_catalog.lower(v_field);
        v_type := pgforce._column_type(v_column);
        SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO v_existing
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = v_table AND a.attname = v_name AND NOT a.attisdropped;
        IF v_existing IS NULL THEN
            -- v_type comes from _column_type's fixed list of spellings.
            EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN %I %s', v_table, v_name, v_type);
            v_added := v_added || v_name;
        ELSIF v_existing = v_type OR pgforce._holds(v_existing, v_type, (v_column ->> 'length')::integer) THEN
            NULL;
        ELSIF pgforce._is_widening(v_existing, v_type) THEN
            -- Longer varchar and more numeric digits at the same scale are
            -- catalog-only changes: no rewrite, no long lock. Postgres
            -- refuses to change the type of a column that a trigger names
            -- (pgforce_status_update's UPDATE OF list);
            -- _install_triggers below creates it again.
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgforce_status_update ON %s', v_table);
            EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I TYPE %s', v_table, v_name, v_type);
        ELSE
            RAISE EXCEPTION 'pgforce: field % of % changed type from % to %', v_field, v_mapping.sobject, v_existing, v_type
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Only widening is applied automatically. Remove the field from the mapping, drop the column, then add the field again to reload it.';
        END IF;
    END LOOP;

    UPDATE pgforce.mapping m SET columns = p_columns WHERE m.id = p_mapping_id;
    PERFORM pgforce._install_triggers(p_mapping_id);
    RETURN v_added;
END
$$;

COMMENT ON FUNCTION pgforce.ensure_table(integer, jsonb) IS 'Creates or alters the mapped table to hold the described columns (called by the worker after describe); returns the columns added.';

-- True when an existing column of type p_existing is kept as it is for a
-- field described as p_described: it holds every value of the field (a
-- longer varchar, a wider numeric), or it is what Heroku Connect made for
-- such a field in a table kept from it: double precision for every number,
-- which keeps about 15 significant digits as it did under Connect, and
-- timestamp without time zone, holding UTC, for datetimes. The application
-- reads those types; changing them would rewrite the table and could break
-- it (a driver returns a decimal for numeric where it returned a float), so
-- only the tables pgforce creates get exact types. p_length is the field's
-- described length: a varchar at least that long holds a field described
-- as text, as Connect's varchar(4099) of a multi-select picklist does.
-- (Retyped to text, such a column was changed under the application, and
-- a view on it made ensure_table fail for ever.)
CREATE FUNCTION pgforce._holds(p_existing text, p_described text, p_length integer DEFAULT NULL) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_existing = 'text' THEN
            p_described = 'text' OR p_described ~ '^character varying\(\d+\)$'
        -- A field that gets text (a multi-select picklist, a long text
        -- area) still has a length, which Connect made its varchar of.
        WHEN p_existing ~ '^character varying\(\d+\)$' AND p_described = 'text' THEN
            coalesce(p_length, 0) > 0 AND substring(p_existing FROM '\d+')::integer >= p_length
        WHEN p_existing ~ '^character varying\(\d+\)$' AND p_described ~ '^character varying\(\d+\)$' THEN
            substring(p_existing FROM '\d+')::integer >= substring(p_described FROM '\d+')::integer
        WHEN p_existing IN ('double precision', 'numeric') THEN
            p_described ~ '^numeric' OR p_described IN ('integer', 'bigint')
        WHEN p_existing ~ '^numeric\(\d+,\d+\)$' AND p_described ~ '^numeric\(\d+,\d+\)$' THEN
            (SELECT e[1] - e[2] >= d[1] - d[2] AND e[2] >= d[2]
             FROM (SELECT pg_catalog.string_to_array(substring(p_existing FROM '\d+,\d+'), ',')::integer[] AS e,
                          pg_catalog.string_to_array(substring(p_described FROM '\d+,\d+'), ',')::integer[] AS d) x)
        WHEN p_existing = 'bigint' THEN
            p_described = 'integer'
        WHEN p_existing = 'timestamp without time zone' THEN
            p_described = 'timestamp with time zone'
        ELSE false
    END
$$;

-- True when changing a column from p_from to p_to keeps every value and
-- needs no table rewrite.
CREATE FUNCTION pgforce._is_widening(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_from ~ '^character varying\(\d+\)$' AND p_to ~ '^character varying\(\d+\)$' THEN
            substring(p_to FROM '\d+')::integer > substring(p_from FROM '\d+')::integer
        WHEN p_from ~ '^character varying\(\d+\)$' AND p_to = 'text' THEN
            true
        WHEN p_from ~ '^numeric\(\d+,\d+\)$' AND p_to ~ '^numeric\(\d+,\d+\)$' THEN
            pg_catalog.split_part(substring(p_from FROM '\d+,\d+'), ',', 2) = pg_catalog.split_part(substring(p_to FROM '\d+,\d+'), ',', 2)
            AND pg_catalog.split_part(substring(p_to FROM '\d+,\d+'), ',', 1)::integer > pg_catalog.split_part(substring(p_from FROM '\d+,\d+'), ',', 1)::integer
        ELSE false
    END
$$;
