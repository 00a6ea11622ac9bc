-- 110_inbound: what the worker needs to sync Salesforce into Postgres:
-- gue's job table, inbound leases on mappings, per-mapping inbound options,
-- and the notification that makes mapping changes take effect at once.
--
-- Ownership of a mapping's inbound sync is a lease (owner + expiry) held in
-- pgforce.mapping, so that several workers against one database never load
-- or stream the same mapping twice, and a crashed worker's mappings are
-- picked up by another once its lease expires.

-- gue (github.com/vgarvardt/gue/v5) queries an unqualified gue_jobs; the
-- worker gives it connections whose search_path is pgforce. The layout is
-- gue's migrations/schema.sql.
CREATE TABLE pgforce.gue_jobs (
    job_id      text        NOT NULL PRIMARY KEY,
    priority    smallint    NOT NULL,
    run_at      timestamptz NOT NULL,
    job_type    text        NOT NULL,
    args        bytea       NOT NULL,
    error_count integer     NOT NULL DEFAULT 0,
    last_error  text,
    queue       text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX idx_gue_jobs_selector ON pgforce.gue_jobs (queue, run_at, priority);

COMMENT ON TABLE pgforce.gue_jobs IS 'Durable worker jobs (loads, reloads, resyncs) queued through gue.';

ALTER TABLE pgforce.mapping
    ADD COLUMN inbound_owner       text,
    ADD COLUMN inbound_lease_until timestamptz,
    ADD COLUMN inbound_mode        text,
    ADD COLUMN hard_delete         boolean NOT NULL DEFAULT false,
    ADD COLUMN resync_requested_at timestamptz,
    ADD COLUMN resync_from         timestamptz,
    ADD COLUMN error_table_shape   text;

COMMENT ON COLUMN pgforce.mapping.inbound_owner IS 'Worker that holds the inbound lease of this mapping (written by the worker).';
COMMENT ON COLUMN pgforce.mapping.inbound_lease_until IS 'When the inbound lease expires unless renewed; another worker may take over after it.';
COMMENT ON COLUMN pgforce.mapping.inbound_mode IS 'How inbound changes arrive now: cdc or poll (written by the worker).';
COMMENT ON COLUMN pgforce.mapping.hard_delete IS 'Delete rows whose record was deleted in Salesforce instead of setting isdeleted.';
COMMENT ON COLUMN pgforce.mapping.resync_requested_at IS 'Set when an incremental resync by SystemModstamp is due (gap overflow, expired replay id).';
COMMENT ON COLUMN pgforce.mapping.resync_from IS 'Where the requested resync reads from: the inbound watermark when it was requested (NULL: everything).';
COMMENT ON COLUMN pgforce.mapping.error_table_shape IS 'Worker use: for a mapping in error because its table was refused (no usable id, a column of another type), the table''s shape then; once it differs the mapping is described again (pgforce.inbound_recheck_tables).';

-- The definition of mapping p_mapping_id's table as far as ensure_table
-- can refuse it: each column's name, type, default or identity and
-- nullability; 'none' while there is no table. No oid: a restored dump
-- has the same shape.
CREATE FUNCTION pgforce._table_shape(p_mapping_id integer) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT pg_catalog.md5(pg_catalog.string_agg(
                   pg_catalog.format('%s %s %s %s %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                                     a.atthasdef, a.attidentity, a.attnotnull), ',' ORDER BY a.attnum))
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = pgforce._mapping_table(p_mapping_id) AND a.attnum > 0 AND NOT a.attisdropped
        HAVING pg_catalog.count(*) > 0), 'none')
$$;

-- Worker use: a mapping in error because ensure_table refused its table
-- (a table of the user's without an id pgforce can key rows by, a column
-- of a type the field cannot be kept in) is fixed by DDL, which changes
-- no mapping: it stayed in error, its worker gone, until the user thought
-- of pgforce.reload. The worker calls this every little while: each such
-- mapping of org p_org whose table's shape differs from when it was
-- refused goes back to new (the notification makes a worker describe it
-- again). A mapping whose table is untouched costs a catalog read and no
-- Salesforce call. Returns how many went back.
CREATE FUNCTION pgforce.inbound_recheck_tables(p_org text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE pgforce.mapping m
    SET state = 'new', state_detail = 'table changed; describing again', error_table_shape = NULL
    WHERE m.org = p_org AND m.state = 'error' AND m.error_table_shape IS NOT NULL
      AND m.error_table_shape IS DISTINCT FROM pgforce._table_shape(m.id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

COMMENT ON FUNCTION pgforce.inbound_recheck_tables(text) IS 'Worker use: send the org''s mappings in error over their table back to new once the table has changed.';

-- Asks for a resync by SystemModstamp from the watermark as it is now, the
-- point the gap starts at. The start is kept apart from the watermark, which
-- goes on moving before the resync runs: a gap overflow shares its batch
-- with later events, and after an expired replay id the stream resumes at
-- the tip; a resync that read from the watermark then skipped the gap, and
-- one that failed halfway had moved the watermark past what it had not read.
-- A request while one is pending reads from the earlier of the two points.
-- p_forget_replay drops the stored replay id too (it expired).
CREATE FUNCTION pgforce.inbound_request_resync(p_mapping_id integer, p_forget_replay boolean DEFAULT false) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgforce.mapping m
    SET resync_from = CASE WHEN m.resync_requested_at IS NULL THEN m.inbound_watermark
                           WHEN m.resync_from IS NULL THEN NULL
                           ELSE LEAST(m.resync_from, m.inbound_watermark) END,
        resync_requested_at = pg_catalog.now(),
        cdc_replay_id = CASE WHEN p_forget_replay THEN NULL ELSE m.cdc_replay_id END
    WHERE m.id = p_mapping_id
$$;

COMMENT ON FUNCTION pgforce.inbound_request_resync(integer, boolean) IS 'Worker use: ask for a resync by SystemModstamp from the inbound watermark as it is now.';

-- Wakes every worker when the mapping set changes; a statement-level
-- trigger so a bulk edit sends one notification, and Postgres folds equal
-- notifications within a transaction anyway. Lease renewals by the worker
-- itself only touch the lease columns and are not worth a wake-up, so the
-- worker marks them with pgforce.origin = 'salesforce'.
CREATE FUNCTION pgforce._mapping_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.current_setting('pgforce.lease', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_catalog.pg_notify('pgforce_mapping', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER mapping_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgforce.mapping
    FOR EACH STATEMENT EXECUTE FUNCTION pgforce._mapping_notify();
CREATE TRIGGER org_notify AFTER INSERT OR UPDATE OR DELETE ON pgforce.org
    FOR EACH STATEMENT EXECUTE FUNCTION pgforce._mapping_notify();

-- Claims or renews the inbound lease of a mapping for p_owner; true when
-- p_owner holds it afterwards. A paused mapping, a paused org or a mapping
-- in error is never claimed.
CREATE FUNCTION pgforce.inbound_claim(p_mapping_id integer, p_owner text, p_lease interval) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_claimed boolean;
BEGIN
    PERFORM pg_catalog.set_config('pgforce.lease', 'on', true);
    UPDATE pgforce.mapping m
    SET inbound_owner = p_owner, inbound_lease_until = pg_catalog.clock_timestamp() + p_lease
    FROM pgforce.org o
    WHERE m.id = p_mapping_id AND o.name = m.org
      AND NOT m.paused AND NOT o.paused AND m.state <> 'error'
      AND (m.inbound_owner IS NULL OR m.inbound_owner = p_owner
           OR m.inbound_lease_until IS NULL OR m.inbound_lease_until < pg_catalog.clock_timestamp());
    v_claimed := FOUND;
    PERFORM pg_catalog.set_config('pgforce.lease', 'off', true);
    RETURN v_claimed;
END
$$;

COMMENT ON FUNCTION pgforce.inbound_claim(integer, text, interval) IS 'Worker use: claim or renew the inbound lease of a mapping.';

-- Gives a lease up (on shutdown), so another worker may take over at once.
CREATE FUNCTION pgforce.inbound_release(p_mapping_id integer, p_owner text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('pgforce.lease', 'on', true);
    UPDATE pgforce.mapping m SET inbound_owner = NULL, inbound_lease_until = NULL
    WHERE m.id = p_mapping_id AND m.inbound_owner = p_owner;
    PERFORM pg_catalog.set_config('pgforce.lease', 'off', true);
END
$$;

COMMENT ON FUNCTION pgforce.inbound_release(integer, text) IS 'Worker use: give up the inbound lease of a mapping.';

-- Records an inbound failure for a mapping (describe, load, poll, cdc) or a
-- record, for pgforce.status and pgforce.error. A record that fails again
-- (a replay, a resync, the re-read of pgforce.retry) updates its open or
-- retrying error, which is open again, instead of adding another; a
-- conflict of the record is a different matter and stays as it is.
CREATE FUNCTION pgforce.inbound_error(p_mapping_id integer, p_operation text, p_sfid text, p_payload jsonb,
                                      p_code text, p_message text, p_fields text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    IF p_sfid IS NOT NULL THEN
        UPDATE pgforce.error e
        SET operation = p_operation, payload = p_payload, error_code = p_code, message = p_message,
            fields = p_fields, attempts = e.attempts + 1, state = 'open'
        WHERE e.id = (SELECT x.id FROM pgforce.error x
                      WHERE x.mapping_id = p_mapping_id AND x.direction = 'inbound' AND x.sfid = p_sfid
                        AND x.state IN ('open', 'retrying') AND x.error_code IS DISTINCT FROM 'CONFLICT'
                      ORDER BY x.id LIMIT 1)
        RETURNING e.id INTO v_id;
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END IF;
    INSERT INTO pgforce.error (mapping_id, direction, operation, sfid, payload, error_code, message, fields)
    VALUES (p_mapping_id, 'inbound', p_operation, p_sfid, p_payload, p_code, p_message, p_fields)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

COMMENT ON FUNCTION pgforce.inbound_error(integer, text, text, jsonb, text, text, text[]) IS 'Worker use: record a failed inbound record or operation.';

-- A user edit of what is synced restarts the mapping's inbound pipeline:
-- a mapping in error whose fields or object were fixed is described again,
-- and a loaded mapping with new fields is described, altered and merged
-- again so that the new columns are back-filled.
CREATE FUNCTION pgforce._mapping_edited() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A mapping in error is described again after any edit the describe
    -- checks (an upsert_field that is no External ID is fixed by changing
    -- upsert_field or mode).
    IF NEW.state IS NOT DISTINCT FROM OLD.state AND OLD.state = 'error'
       AND (NEW.fields, NEW.sobject, NEW.upsert_field, NEW.mode) IS DISTINCT FROM (OLD.fields, OLD.sobject, OLD.upsert_field, OLD.mode) THEN
        NEW.state := 'new';
        NEW.state_detail := 'mapping edited; describing again';
    ELSIF NEW.state IS NOT DISTINCT FROM OLD.state AND OLD.state = 'synced'
       AND (NEW.fields IS DISTINCT FROM OLD.fields OR NEW.sobject IS DISTINCT FROM OLD.sobject) THEN
        NEW.state := 'loading';
        NEW.state_detail := 'fields changed; loading the new columns';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER mapping_edited BEFORE UPDATE ON pgforce.mapping
    FOR EACH ROW EXECUTE FUNCTION pgforce._mapping_edited();

-- Records the worker must read again from Salesforce: those of gap and
-- undelete events, and partial updates of rows it does not have yet. Rows
-- are queued in the same transaction as the replay id of the event that
-- asked for them, so a crash between the two never loses a re-read.
CREATE TABLE pgforce.inbound_reread (
    mapping_id integer     NOT NULL REFERENCES pgforce.mapping (id) ON DELETE CASCADE,
    sfid       text        NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping_id, sfid)
);

-- The worker reads a mapping's queue oldest first, a batch at a time:
-- without this, each batch sorted the whole queue (65 ms a batch with
-- 500,000 queued), which made draining it quadratic.
CREATE INDEX inbound_reread_queued_idx ON pgforce.inbound_reread (mapping_id, queued_at);

COMMENT ON TABLE pgforce.inbound_reread IS 'Records queued for the worker to read again from Salesforce (gap and undelete events).';

-- The ids a reload has read so far. A reload merges into the table rather
-- than emptying it, so afterwards the rows whose record was not read (it
-- was deleted in Salesforce while nobody was syncing, or purged) are
-- found by this list and marked deleted. Unlogged: it only lives for the
-- duration of a reload, which restarts from scratch after a crash.
CREATE UNLOGGED TABLE pgforce.inbound_seen (
    mapping_id integer NOT NULL,
    sfid       text    NOT NULL
);

CREATE INDEX inbound_seen_idx ON pgforce.inbound_seen (mapping_id, sfid);

COMMENT ON TABLE pgforce.inbound_seen IS 'Worker use: record ids read by a reload in progress.';

-- A first load into an empty table builds the SystemModstamp index once at
-- the end, by sorting, instead of entry by entry for every row COPY writes
-- (the index is not needed meanwhile: change events find rows by sfid, and
-- nothing reads the watermark until the load ends). The index keeps the
-- name ensure_table gives it (040_table.sql). Only an empty table loses it,
-- under a lock taken with a short timeout so that a reader of the table
-- never waits behind the DROP; on timeout the load keeps the index.
CREATE FUNCTION pgforce.inbound_defer_indexes(p_mapping_id integer) RETURNS boolean
LANGUAGE plpgsql
SET lock_timeout = '1s'
AS $$
DECLARE
    v_table regclass := pgforce._mapping_table(p_mapping_id);
    v_index regclass;
    v_empty boolean;
BEGIN
    SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', o.schema_name, pgforce._modstamp_index_name(m.table_name)))
    INTO v_index
    FROM pgforce.mapping m JOIN pgforce.org o ON o.name = m.org
    WHERE m.id = p_mapping_id;
    IF v_table IS NULL OR v_index IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE pg_catalog.format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_table);
    EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT FROM %s)', v_table) INTO v_empty;
    IF NOT v_empty THEN
        RETURN false;
    END IF;
    EXECUTE pg_catalog.format('DROP INDEX %s', v_index);
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;

COMMENT ON FUNCTION pgforce.inbound_defer_indexes(integer) IS 'Worker use: drop the SystemModstamp index of an empty mapped table before its first load (inbound_restore_indexes builds it after).';

-- Builds the SystemModstamp index of a mapping's table again when it is
-- missing (after a deferred load, or a load a crash interrupted); true when
-- it built it.
CREATE FUNCTION pgforce.inbound_restore_indexes(p_mapping_id integer) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_table  regclass := pgforce._mapping_table(p_mapping_id);
    v_schema text;
    v_name   text;
BEGIN
    SELECT o.schema_name, m.table_name INTO v_schema, v_name
    FROM pgforce.mapping m JOIN pgforce.org o ON o.name = m.org
    WHERE m.id = p_mapping_id;
    IF v_table IS NULL OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', v_schema, pgforce._modstamp_index_name(v_name))) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pgforce._create_modstamp_index(v_schema, v_name);
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgforce.inbound_restore_indexes(integer) IS 'Worker use: build the SystemModstamp index of a mapped table again when it is missing.';
