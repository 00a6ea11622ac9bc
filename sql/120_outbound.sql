-- 120_outbound: what the outbound worker (worker/outbound) needs beyond the
-- outbox itself: its liveness and feed mode, claiming that keeps a failed
-- insert's later changes waiting, lease recovery after a crash, and the
-- functions behind the outbound columns of pgforce.status (130_status).

-- One row per running outbound worker, upserted on every heartbeat. The
-- feed mode is what pgforce.status shows; seen_at tells live workers from
-- dead ones, whose claims are handed out again (pgforce._outbound_reclaim).
CREATE TABLE pgforce.outbound_worker (
    worker      text        NOT NULL PRIMARY KEY,
    feed_mode   text        NOT NULL,
    feed_detail text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbound_worker_feed_mode_valid CHECK (feed_mode IN ('starting', 'logical_replication', 'notify_poll', 'backlog'))
);

COMMENT ON TABLE pgforce.outbound_worker IS 'Running outbound workers and how each learns of new outbox rows (logical_replication; notify_poll where logical replication is unavailable; backlog while a large backlog drains, with the slot dropped until it is done).';

-- Records a worker's heartbeat and feed mode.
CREATE FUNCTION pgforce._outbound_heartbeat(p_worker text, p_mode text, p_detail text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pgforce.outbound_worker AS w (worker, feed_mode, feed_detail)
    VALUES (p_worker, p_mode, p_detail)
    ON CONFLICT (worker) DO UPDATE
    SET feed_mode = EXCLUDED.feed_mode, feed_detail = EXCLUDED.feed_detail, seen_at = pg_catalog.now()
$$;

-- The Bulk API 2.0 jobs a worker has created and not yet seen end, with
-- the outbox entries each carries. A job closed in Salesforce runs whether
-- its worker lives or not: if the worker dies, its entries must stay held
-- until the job has ended, or they are sent again meanwhile, newer changes
-- after them, and the job then writes its older values over them. The
-- worker deletes its row once the job has ended or was aborted; the rows
-- of a dead worker are settled by the next worker's reclaim (see
-- reclaim in worker/outbound).
CREATE TABLE pgforce.outbound_bulk_job (
    job_id     text        NOT NULL PRIMARY KEY,
    mapping_id integer     NOT NULL,
    worker     text        NOT NULL,
    entries    bigint[]    NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Its batch could not tell whether the job runs (its close, or the
    -- wait for its end, failed without an answer): its entries stay
    -- claimed by its worker, which lives on, until reclaim sees the job
    -- end. Handed back at once, they were sent again beside the job, and
    -- the job then wrote its older values over theirs and newer ones.
    orphaned   boolean     NOT NULL DEFAULT false
);

COMMENT ON TABLE pgforce.outbound_bulk_job IS 'Bulk API 2.0 ingest jobs not yet seen ending, and the outbox entries each carries; held until the job ends even when its worker dies.';

-- Rows the inbound worker created for a record that pgforce's own outbound
-- side had just created: the change event of the create (its changeOrigin
-- names our client) arrived while no row had the record's Id yet. Normally
-- the Id is written back moments later and the row is merged into the
-- user's (_outbound_adopt_echo_rows). When the create's answer was lost
-- instead (the worker died, or the connection dropped after Salesforce
-- committed), the insert is sent again, and the worker first looks for the
-- record it may have created (findCreated in worker/outbound): a record
-- held by a row listed here may be taken over, while one held by any other
-- row belongs to that row. A row left here is an orphan's; it is pruned
-- after a week.
CREATE TABLE pgforce.outbound_echo_row (
    mapping_id integer               NOT NULL REFERENCES pgforce.mapping ON DELETE CASCADE,
    sfid       character varying(18) NOT NULL,
    seen_at    timestamptz           NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping_id, sfid)
);

COMMENT ON TABLE pgforce.outbound_echo_row IS 'Rows the inbound worker created from the change event of a record pgforce itself created, before its Id was written back; a lost create answer may take them over.';

-- Hands the claims of dead workers back to the queue: entries claimed by a
-- worker that has not been seen within p_lease (it crashed, or was killed in
-- the middle of a batch). Those changes may or may not have reached
-- Salesforce; sending them again is safe for updates, deletes and upserts,
-- and a plain insert looks for the record it may have created first.
-- Forgotten workers are removed. Returns the number of entries released.
-- p_hold lists entries of a dead worker's Bulk job still running in
-- Salesforce, which stay claimed until it ends.
CREATE FUNCTION pgforce._outbound_reclaim(p_lease interval, p_hold bigint[] DEFAULT '{}') RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE pgforce.outbox o
    SET claimed_at = NULL, claimed_by = NULL
    WHERE o.claimed_at IS NOT NULL
      AND o.claimed_at < pg_catalog.now() - p_lease
      AND NOT EXISTS (SELECT FROM pgforce.outbound_worker w
                      WHERE w.worker = o.claimed_by AND w.seen_at > pg_catalog.now() - p_lease)
      AND o.id <> ALL (coalesce(p_hold, '{}'));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    DELETE FROM pgforce.outbound_worker w WHERE w.seen_at < pg_catalog.now() - interval '1 day';
    -- Salesforce keeps a job's results for 7 days; a row older than that
    -- names a job it has forgotten.
    DELETE FROM pgforce.outbound_bulk_job j WHERE j.created_at < pg_catalog.now() - interval '7 days';
    DELETE FROM pgforce.outbound_echo_row e WHERE e.seen_at < pg_catalog.now() - interval '7 days';
    RETURN v_count;
END
$$;

-- pgforce.claim, except that the changes of blocked records stay queued
-- (a retry, or an update, is not held back by a failed insert, but waits,
-- like every change, for a conflict to be resolved).
-- Per-record order is kept as in pgforce.claim: an entry is handed out only
-- together with every earlier entry of its record.
--
-- The earlier entries left out (in flight with some worker, locked by
-- another claim, or of a blocked record) are found for the whole batch in
-- one scan of outbox_record_idx for the batch's records: a probe per
-- entry (earlier entries of its record?) reads all of a hot record's
-- entries for each of them, quadratic when one row changed thousands of
-- times, while the scan reads each record's entries once. It replaced a
-- range scan of every entry up to the batch's last id, which read the
-- entries in flight (15,000 in a Bulk drain) for every claim and sorted
-- them with the batch: 94 ms against 66 ms for a claim of 5,000 with
-- 15,000 in flight.
--
-- p_after lets a worker that keeps claiming start past its own last
-- claim: the entries before it are mostly its own in flight (15,000 in a
-- Bulk drain), which the claim read one by one to find the unclaimed
-- entries after them. Unclaimed entries it passes over wait for the
-- worker's next pass from 0; the check for earlier entries of the batch's
-- records looks at all of them whatever p_after says, so order holds.
--
-- Every scan of the outbox here goes through an index, whatever the
-- statistics say. They usually describe the outbox as it was before the
-- backlog (a Collections drain does not analyze it first), and with such
-- statistics Postgres read every remaining entry of a 100,000 backlog
-- with a bitmap scan and sorted them on disk to find the first 2,000:
-- 100-130 ms a claim against 10-20 ms, and a Collections drain 15%
-- slower. The ordered index scan stops after the claim's entries.
CREATE FUNCTION pgforce._outbound_claim(p_mapping_id integer, p_limit integer, p_worker text, p_after bigint DEFAULT 0)
RETURNS SETOF pgforce.outbox
LANGUAGE sql
SET enable_bitmapscan = off SET enable_seqscan = off AS $$
    WITH locked AS MATERIALIZED (
        SELECT o.id, o.record_id
        FROM pgforce.outbox o
        WHERE o.mapping_id = p_mapping_id AND o.id > p_after AND o.claimed_at IS NULL
          -- A pause holds every claim that starts after it, also those of
          -- a drain that began before it.
          AND NOT EXISTS (SELECT FROM pgforce.mapping pm JOIN pgforce.org po ON po.name = pm.org
                          WHERE pm.id = p_mapping_id AND (pm.paused OR po.paused))
          -- A record's changes wait while a two-way conflict awaits
          -- pgforce.resolve, and its delete while its insert failed, until
          -- the user chooses retry, ignore or revert; other records go on.
          -- A retry of the insert does not wait, nor does an update of its
          -- row: the user's fix, which the worker sends as the insert of
          -- the whole row, as a retry would (a failed update's fix goes the
          -- same way), and which becomes that insert when its answer is
          -- lost. Held, the fix waited for a pgforce.retry with the row
          -- saying PENDING.
          AND NOT EXISTS (
                SELECT FROM pgforce.error e
                WHERE e.mapping_id = p_mapping_id AND e.record_id = o.record_id AND e.state = 'open'
                  AND ((e.direction = 'outbound' AND e.operation = 'insert' AND o.retry_of IS NULL AND o.op = 'delete') OR e.error_code = 'CONFLICT'))
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), candidates AS (
        -- This claim's entries, and the other entries of their records
        -- before its last one (in flight, locked by another claim, or of
        -- a blocked record). Postgres takes an array it cannot see for
        -- ten elements, so it reads the records' entries through
        -- outbox_record_idx whatever its statistics say, a descent per
        -- record (the array's duplicates are dropped first).
        SELECT l.id, l.record_id, true AS mine FROM locked l
        UNION ALL
        SELECT e.id, e.record_id, false
        FROM pgforce.outbox e
        WHERE e.mapping_id = p_mapping_id
          AND e.record_id = ANY (ARRAY(SELECT l.record_id FROM locked l))
          AND e.id < (SELECT pg_catalog.max(l.id) FROM locked l)
          AND e.id NOT IN (SELECT l.id FROM locked l)
    ), ranked AS (
        -- The first entry left out, per record, found with a window over
        -- one sort rather than a join: the outbox's statistics are usually
        -- stale (it fills and empties faster than autovacuum analyzes it),
        -- so Postgres expected a couple of rows from "locked" and joined
        -- it to the entries in flight with a nested loop, comparing each
        -- with each: 25 million comparisons and 3 s for a claim of 5,000
        -- with 5,000 in flight, and minutes for a 100,000 backlog drained
        -- with three Bulk jobs in flight.
        SELECT c.id, c.mine,
               pg_catalog.min(c.id) FILTER (WHERE NOT c.mine) OVER (PARTITION BY c.record_id) AS first_held
        FROM candidates c
    ), eligible AS (
        SELECT r.id
        FROM ranked r
        WHERE r.mine AND (r.first_held IS NULL OR r.first_held > r.id)
    )
    -- The entries are looked up by id in the primary key from an array
    -- built once, never joined: with statistics saying the outbox holds a
    -- row or two (as after a drain, before autovacuum has looked again),
    -- the join was planned as a scan of the outbox that ran the window
    -- query above again for every entry, and a claim of 5,000 out of a
    -- 100,000 backlog went from 0.1 s to over a minute.
    UPDATE pgforce.outbox o
    SET claimed_at = pg_catalog.now(), claimed_by = p_worker, attempts = o.attempts + 1,
        sent_from = coalesce(o.sent_from, pg_catalog.now())
    WHERE o.id = ANY (ARRAY(SELECT eligible.id FROM eligible))
    RETURNING o.*
$$;

COMMENT ON FUNCTION pgforce._outbound_claim(integer, integer, text, bigint) IS 'Worker: pgforce.claim that leaves the changes of records behind a failed insert or an open conflict queued.';

-- Changes waiting behind a failed insert or an open conflict, per mapping,
-- and the deletes of records that a child's change waiting so moves away
-- from. The worker holds such a delete until the child has moved (see
-- holdParentDeletes in worker/outbound: Salesforce deletes a record's
-- children with it), so it waits for that error too, whose row is the
-- child's: counted nowhere, it waited with nothing to say why. Only child
-- mappings with an open error are read, so that pgforce.status costs no
-- more while there is none.
-- This and _outbound_feed_mode run as their owner: pgforce.status calls
-- them as its reader, who needs no right on what they read (see
-- _mapping_row_count).
-- jit is off as in capture: the child's query is estimated above
-- jit_above_cost, and compiling it took 0.59 s of a 0.85 s status read.
CREATE FUNCTION pgforce._outbound_blocked_count(p_mapping_id integer) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    v_child record;
    v_left  text[] := '{}';
    v_ids   text[];
    v_count bigint;
BEGIN
    FOR v_child IN
        SELECT x.id, pgforce._mapping_table(x.id) AS tbl, pg_catalog.lower(c ->> 'name') AS col
        FROM pgforce.mapping p
        JOIN pgforce.mapping x ON x.org = p.org AND x.id <> p.id AND NOT x.paused
        CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(x.columns) c
        WHERE p.id = p_mapping_id AND c ->> 'type' = 'reference'
          AND pg_catalog.jsonb_typeof(c -> 'referenceTo') = 'array'
          AND EXISTS (SELECT FROM pg_catalog.jsonb_array_elements_text(c -> 'referenceTo') r WHERE pg_catalog.lower(r) = pg_catalog.lower(p.sobject))
          AND EXISTS (SELECT FROM pgforce.error e WHERE e.mapping_id = x.id AND e.state = 'open')
    LOOP
        CONTINUE WHEN v_child.tbl IS NULL OR NOT EXISTS (
            SELECT FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = v_child.tbl AND a.attname = v_child.col AND a.attnum > 0 AND NOT a.attisdropped);
        -- The parents left: the lookup's old value, or the row's while a
        -- relationship column of that lookup names another (the worker
        -- resolves it), of a child with a record in Salesforce.
        EXECUTE pg_catalog.format($q$
            SELECT ARRAY(
                SELECT o.old ->> $2 FROM pgforce.outbox o
                WHERE o.mapping_id = $1 AND o.op = 'update' AND o.old ->> $2 IS NOT NULL
                  AND (o.sfid IS NOT NULL OR EXISTS (SELECT FROM %1$s t WHERE t.id = o.record_id AND t.sfid IS NOT NULL))
                  AND EXISTS (SELECT FROM pgforce.error e
                              WHERE e.mapping_id = $1 AND e.record_id = o.record_id AND e.state = 'open'
                                AND ((e.direction = 'outbound' AND e.operation = 'insert' AND o.retry_of IS NULL AND o.op = 'delete') OR e.error_code = 'CONFLICT'))
                UNION
                SELECT t.%2$I::text FROM %1$s t JOIN pgforce.outbox o ON o.mapping_id = $1 AND o.record_id = t.id
                WHERE o.op = 'update' AND t.sfid IS NOT NULL AND t.%2$I IS NOT NULL
                  AND EXISTS (SELECT FROM pg_catalog.jsonb_each(o.new) k
                              WHERE k.key LIKE '%%\_\_r\_\_%%' AND pg_catalog.jsonb_typeof(k.value) <> 'null'
                                AND pgforce._rel_lookup($1, k.key) = $2)
                  AND EXISTS (SELECT FROM pgforce.error e
                              WHERE e.mapping_id = $1 AND e.record_id = o.record_id AND e.state = 'open'
                                AND ((e.direction = 'outbound' AND e.operation = 'insert' AND o.retry_of IS NULL AND o.op = 'delete') OR e.error_code = 'CONFLICT')))
            $q$, v_child.tbl, v_child.col) INTO v_ids USING v_child.id, v_child.col;
        v_left := v_left || v_ids;
    END LOOP;
    SELECT pg_catalog.count(*) INTO v_count
    FROM pgforce.outbox o
    WHERE o.mapping_id = p_mapping_id AND o.claimed_at IS NULL
      -- As _outbound_claim holds them back: a retry or an update waits
      -- behind a conflict, not behind a failed insert.
      AND EXISTS (SELECT FROM pgforce.error e
                  WHERE e.mapping_id = p_mapping_id AND e.record_id = o.record_id AND e.state = 'open'
                    AND ((e.direction = 'outbound' AND e.operation = 'insert' AND o.retry_of IS NULL AND o.op = 'delete') OR e.error_code = 'CONFLICT'));
    -- The held deletes are counted apart, and only when there are any: in
    -- an OR with them, the EXISTS above was no semi-join but run once per
    -- queued change, each run reading every open error of the mapping (4 s
    -- for 20,000 queued changes beside 2,000 refused updates, against
    -- 2 ms). Claimed ones too: the worker claims such a delete each pass,
    -- and hands it back. One counted above is not counted again.
    IF pg_catalog.cardinality(v_left) > 0 THEN
        SELECT v_count + pg_catalog.count(*) INTO v_count
        FROM pgforce.outbox o
        WHERE o.mapping_id = p_mapping_id AND o.op = 'delete' AND o.sfid = ANY (v_left)
          AND NOT (o.claimed_at IS NULL
                   AND EXISTS (SELECT FROM pgforce.error e
                               WHERE e.mapping_id = p_mapping_id AND e.record_id = o.record_id AND e.state = 'open'
                                 AND ((e.direction = 'outbound' AND e.operation = 'insert' AND o.retry_of IS NULL AND o.op = 'delete') OR e.error_code = 'CONFLICT')));
    END IF;
    RETURN v_count;
END
$$;

-- The feed modes of the workers seen in the last minute, e.g.
-- 'logical_replication' or 'notify_poll'; NULL when no worker runs.
CREATE FUNCTION pgforce._outbound_feed_mode() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.string_agg(DISTINCT w.feed_mode, ',' ORDER BY w.feed_mode)
    FROM pgforce.outbound_worker w
    WHERE w.seen_at > pg_catalog.now() - interval '1 minute'
$$;

-- Before the worker writes an inserted record's new Id back onto its row,
-- the CDC echo of that very insert may already have been applied by the
-- inbound worker, which found no row with the Id and inserted one. That
-- second row holds the record as Salesforce has it (including any edit
-- made there since), so its values of the mapped fields that have no
-- pending Postgres change move into the user's row, and it is deleted;
-- the worker's write-back then gives the user's row the Id. p_rows is
-- [{"record_id": …, "sfid": …}] of the batch's successful inserts. Runs as
-- the worker (pgforce.origin = 'salesforce'), so nothing is captured.
-- Returns the number of rows merged.
CREATE FUNCTION pgforce._outbound_adopt_echo_rows(p_mapping_id integer, p_rows jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_table  regclass := pgforce._mapping_table(p_mapping_id);
    v_cols   text[];
    v_pair   record;
    v_dup    jsonb;
    v_dup_id integer;
    v_keys   text[];
    v_list   text;
    v_count  integer := 0;
    v_pend   jsonb;
BEGIN
    IF v_table IS NULL THEN
        RETURN 0;
    END IF;
    -- The columns Salesforce fills: mapped fields and the system columns,
    -- never external-id relationship columns (inbound leaves them empty)
    -- or the user's own columns.
    v_cols := ARRAY(
        SELECT c FROM pg_catalog.unnest(pgforce._captured_columns(p_mapping_id)) c WHERE c NOT LIKE '%\_\_r\_\_%'
        UNION
        SELECT a.attname::text FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = v_table AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname::text = ANY (ARRAY['systemmodstamp', 'isdeleted', 'createddate']));
    FOR v_pair IN
        SELECT * FROM pg_catalog.jsonb_to_recordset(p_rows) AS p(record_id integer, sfid text) WHERE p.sfid <> '' ORDER BY p.record_id
    LOOP
        EXECUTE pg_catalog.format('SELECT d.id, pg_catalog.to_jsonb(d) FROM %s d WHERE d.sfid = $1 AND d.id <> $2 FOR UPDATE', v_table)
            INTO v_dup_id, v_dup USING v_pair.sfid, v_pair.record_id;
        IF v_dup_id IS NULL THEN
            CONTINUE;
        END IF;
        -- The row's queued changes stay, and so do the values of its
        -- refused changes that an open, retrying or ignored error keeps
        -- (its retry sends the row as it is): taken from the echo, a
        -- retry sent Salesforce's own value back and resolved the error,
        -- the change lost.
        v_pend := pgforce._pending_fields(p_mapping_id, v_pair.record_id);
        v_keys := ARRAY(SELECT c FROM pg_catalog.unnest(v_cols) c
                        WHERE NOT v_pend ? c AND c <> ALL (pgforce._refused_fields(p_mapping_id, v_pair.record_id)));
        EXECUTE pg_catalog.format('DELETE FROM %s d WHERE d.id = $1', v_table) USING v_dup_id;
        DELETE FROM pgforce.outbound_echo_row e WHERE e.mapping_id = p_mapping_id AND e.sfid = v_pair.sfid;
        IF pg_catalog.cardinality(v_keys) > 0 THEN
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ') INTO v_list FROM pg_catalog.unnest(v_keys) k;
            EXECUTE pg_catalog.format('UPDATE %s t SET (%s) = (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1)) WHERE t.id = $2',
                                      v_table, v_list, v_list, v_table)
                USING v_dup, v_pair.record_id;
        END IF;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
