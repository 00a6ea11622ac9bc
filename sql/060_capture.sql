-- 060_capture: triggers on mapped tables.
--
-- Capture is on the application's hot path, so it is set-based: one
-- statement-level AFTER trigger per operation reads the statement's
-- transition tables and appends every changed row to pgforce.outbox with a
-- single INSERT ... SELECT. The only per-row work is the BEFORE trigger that
-- keeps _hc_lastop/_hc_err honest, and its WHEN clause skips even that call
-- for rows that are already PENDING.
--
-- The worker marks its own writes with SET pgforce.origin = 'salesforce';
-- those are never captured (no sync loops) and are stamped SYNCED.

-- Columns that describe sync state rather than data, never captured.
CREATE FUNCTION pgforce._uncaptured_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['id', '_hc_lastop', '_hc_err']
$$;

-- BEFORE INSERT OR UPDATE, FOR EACH ROW: _hc_lastop is PENDING after a user
-- write and SYNCED after the worker's, like Heroku Connect's status trigger.
-- The worker may set another value (e.g. FAILED with _hc_err) explicitly.
CREATE FUNCTION pgforce._status() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
BEGIN
    IF pg_catalog.current_setting('pgforce.origin', true) = 'salesforce' THEN
        IF TG_OP = 'INSERT' THEN
            IF NEW._hc_lastop IS NULL THEN
                NEW._hc_lastop := 'SYNCED';
                NEW._hc_err := NULL;
            END IF;
        ELSIF NEW._hc_lastop IS NOT DISTINCT FROM OLD._hc_lastop THEN
            NEW._hc_lastop := 'SYNCED';
            NEW._hc_err := NULL;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        -- An update that changes no data leaves the status alone: nothing
        -- was captured, so nothing is pending.
        v_row := NEW;
        v_row._hc_lastop := OLD._hc_lastop;
        v_row._hc_err := OLD._hc_err;
        IF v_row IS NOT DISTINCT FROM OLD THEN
            RETURN NEW;
        END IF;
    END IF;
    NEW._hc_lastop := 'PENDING';
    NEW._hc_err := NULL;
    RETURN NEW;
END
$$;

-- AFTER INSERT/UPDATE/DELETE, FOR EACH STATEMENT, with transition tables
-- pgforce_new/pgforce_old. TG_ARGV[0] is the mapping id. Plans are cached per
-- trigger, so the static SQL below is planned once per table and session.
-- SECURITY DEFINER lets application roles write to tables they may not
-- otherwise touch, without any grant on pgforce.outbox.
CREATE FUNCTION pgforce._capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_mapping_id integer := TG_ARGV[0]::integer;
    v_skip       text[]  := pgforce._uncaptured_columns();
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new)
        SELECT v_mapping_id, 'insert', n.id, n.sfid, pg_catalog.to_jsonb(n) OPERATOR(pg_catalog.-) v_skip
        FROM pgforce_new n;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only the changed columns, with their old values; rows whose data
        -- did not change produce no entry.
        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new, old)
        SELECT v_mapping_id, 'update', n.id, coalesce(n.sfid, o.sfid), d.new, d.old
        FROM pgforce_new n
        JOIN pgforce_old o ON o.id = n.id
        CROSS JOIN LATERAL (
            SELECT pg_catalog.jsonb_object_agg(nv.key, nv.value) AS new,
                   pg_catalog.jsonb_object_agg(nv.key, ov.value) AS old
            FROM pg_catalog.jsonb_each(pg_catalog.to_jsonb(n)) nv
            JOIN pg_catalog.jsonb_each(pg_catalog.to_jsonb(o)) ov ON ov.key = nv.key
            WHERE nv.value IS DISTINCT FROM ov.value AND NOT nv.key = ANY (v_skip)
        ) d
        WHERE n IS DISTINCT FROM o AND d.new IS NOT NULL;
    ELSE
        -- A row that never reached Salesforce (no sfid) takes its pending
        -- insert and updates with it. Entries already claimed are in
        -- flight, so the delete is recorded for the worker to finish.
        DELETE FROM pgforce.outbox ob
        USING pgforce_old o
        WHERE o.sfid IS NULL AND ob.mapping_id = v_mapping_id AND ob.record_id = o.id AND ob.claimed_at IS NULL;

        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, old)
        SELECT v_mapping_id, 'delete', o.id, o.sfid, pg_catalog.to_jsonb(o) OPERATOR(pg_catalog.-) v_skip
        FROM pgforce_old o
        WHERE o.sfid IS NOT NULL
           OR EXISTS (SELECT FROM pgforce.outbox ob WHERE ob.mapping_id = v_mapping_id AND ob.record_id = o.id);
    END IF;
    -- A wake-up hint for an idle worker. Identical notifications are folded
    -- into one per transaction by Postgres, so this costs one per commit.
    PERFORM pg_catalog.pg_notify('pgforce_outbox', '');
    RETURN NULL;
END
$$;

-- BEFORE INSERT/UPDATE/DELETE, FOR EACH STATEMENT on read_only tables.
CREATE FUNCTION pgforce._refuse_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pgforce: %.% is read_only: % is not synced to Salesforce', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = pg_catalog.format('Change the data in Salesforce, or make the mapping read_write: UPDATE pgforce.mapping SET mode = ''read_write'' WHERE id = %s;', TG_ARGV[0]);
END
$$;

-- BEFORE TRUNCATE: a truncate fires no row triggers, so it would silently
-- desync the table from Salesforce.
CREATE FUNCTION pgforce._refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pgforce: TRUNCATE of %.% is refused: it would silently desync the table from Salesforce', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'object_in_use',
              HINT = pg_catalog.format('DELETE the rows to delete them in Salesforce too, or reload the table from Salesforce with SELECT pgforce.reload(%s);', TG_ARGV[0]);
END
$$;

-- (Re)creates the pgforce triggers of a mapping's table for its mode. Safe
-- to call repeatedly; a no-op when the table does not exist yet.
CREATE FUNCTION pgforce._install_triggers(p_mapping_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_mapping pgforce.mapping;
    v_table   regclass;
    v_origin  text := 'pg_catalog.current_setting(''pgforce.origin'', true) IS DISTINCT FROM ''salesforce''';
BEGIN
    SELECT * INTO v_mapping FROM pgforce.mapping m WHERE m.id = p_mapping_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_table := pgforce._mapping_table(p_mapping_id);
    IF v_table IS NULL THEN
        RETURN;
    END IF;
    PERFORM pgforce._drop_triggers(v_table);

    EXECUTE pg_catalog.format(
        'CREATE TRIGGER pgforce_status BEFORE INSERT OR UPDATE ON %s FOR EACH ROW'
        ' WHEN (NEW._hc_lastop IS DISTINCT FROM ''PENDING'' OR NEW._hc_err IS NOT NULL OR NOT (%s))'
        ' EXECUTE FUNCTION pgforce._status()', v_table, v_origin);
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER pgforce_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT WHEN (%s)'
        ' EXECUTE FUNCTION pgforce._refuse_truncate(%L)', v_table, v_origin, p_mapping_id);
    IF v_mapping.mode = 'read_write' THEN
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_capture_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgforce_new'
            ' FOR EACH STATEMENT WHEN (%s) EXECUTE FUNCTION pgforce._capture(%L)', v_table, v_origin, p_mapping_id);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_capture_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgforce_old NEW TABLE AS pgforce_new'
            ' FOR EACH STATEMENT WHEN (%s) EXECUTE FUNCTION pgforce._capture(%L)', v_table, v_origin, p_mapping_id);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_capture_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS pgforce_old'
            ' FOR EACH STATEMENT WHEN (%s) EXECUTE FUNCTION pgforce._capture(%L)', v_table, v_origin, p_mapping_id);
    ELSE
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_read_only BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT WHEN (%s)'
            ' EXECUTE FUNCTION pgforce._refuse_write(%L)', v_table, v_origin, p_mapping_id);
    END IF;
END
$$;

-- Drops every pgforce trigger from a table, leaving the user's own.
CREATE FUNCTION pgforce._drop_triggers(p_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_trigger name;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = p_table AND NOT t.tgisinternal AND t.tgname LIKE 'pgforce\_%'
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', v_trigger, p_table);
    END LOOP;
END
$$;

-- The mapping's table, or NULL when it does not exist (yet).
CREATE FUNCTION pgforce._mapping_table(p_mapping_id integer) RETURNS regclass
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', o.schema_name, m.table_name))
    FROM pgforce.mapping m JOIN pgforce.org o ON o.name = m.org
    WHERE m.id = p_mapping_id
$$;

-- Keeps the table's triggers in step with the mapping: a mode change swaps
-- capture for refusal (or back); a deleted mapping leaves a plain table and
-- takes its unsent changes with it.
CREATE FUNCTION pgforce._mapping_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_table regclass;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_table := pg_catalog.to_regclass(pg_catalog.format('%I.%I',
            (SELECT o.schema_name FROM pgforce.org o WHERE o.name = OLD.org), OLD.table_name));
        IF v_table IS NOT NULL THEN
            PERFORM pgforce._drop_triggers(v_table);
        END IF;
        DELETE FROM pgforce.outbox ob WHERE ob.mapping_id = OLD.id;
        RETURN OLD;
    END IF;
    IF NEW.mode IS DISTINCT FROM OLD.mode THEN
        PERFORM pgforce._install_triggers(NEW.id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER mapping_changed AFTER UPDATE OR DELETE ON pgforce.mapping
    FOR EACH ROW EXECUTE FUNCTION pgforce._mapping_changed();
