-- 130_status: one row per mapping saying how its sync is doing. Last of the
-- numbered files, because it reads what the inbound and outbound files add.

-- Exact row count for small tables, the planner's estimate for large ones,
-- so that reading pgforce.status never scans a big table.
CREATE FUNCTION pgforce._row_count(p_table regclass) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_estimate real;
    v_count    bigint;
BEGIN
    IF p_table IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.reltuples INTO v_estimate FROM pg_catalog.pg_class c WHERE c.oid = p_table;
    IF v_estimate >= 100000 THEN
        RETURN v_estimate::bigint;
    END IF;
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', p_table) INTO v_count;
    RETURN v_count;
END
$$;

-- The row count of a mapping's table, for pgforce.status. It runs as its
-- owner, like the view's other helpers, so that a role granted SELECT on
-- the view needs no right on the tables it describes (Postgres checks the
-- tables a view reads as the view's owner, but runs the functions it calls
-- as the reader). It counts only mapped tables: _row_count would count any.
CREATE FUNCTION pgforce._mapping_row_count(p_mapping_id integer) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pgforce._row_count(pgforce._mapping_table(p_mapping_id))
$$;

-- outbound_feed says how the running workers learn of changes, and
-- outbound_blocked counts changes waiting behind a failed insert or a
-- conflict, and deletes waiting for a child's move that waits so
-- (pgforce.error says which and why). A paused org (pgforce.org.paused)
-- stops each of its mappings as pgforce.pause would, but writes none of
-- their rows, which read synced and unpaused here while nothing synced:
-- state, state_detail and paused show the org's pause as they show a
-- mapping's own. The mapping's own comes first; it says who paused it.
CREATE VIEW pgforce.status AS
SELECT m.id                                   AS mapping_id,
       m.org,
       m.sobject,
       o.schema_name,
       m.table_name,
       m.mode,
       CASE WHEN o.paused AND NOT m.paused THEN 'paused' ELSE m.state END AS state,
       CASE WHEN o.paused AND NOT m.paused
            THEN pg_catalog.format('org %s is paused (was %s); resume it with UPDATE pgforce.org SET paused = false WHERE name = %L;',
                                   o.name, m.state, o.name)
            ELSE m.state_detail END          AS state_detail,
       m.paused OR o.paused                   AS paused,
       pgforce._mapping_row_count(m.id)      AS row_count,
       coalesce(ob.backlog, 0)     AS outbound_backlog,
       pg_catalog.now() - ob.oldest           AS oldest_pending_age,
       coalesce(er.open_errors, 0) AS open_errors,
       m.last_inbound_at,
       m.last_outbound_at,
       pgforce._outbound_feed_mode()          AS outbound_feed,
       pgforce._outbound_blocked_count(m.id)  AS outbound_blocked,
       dc.missing + dc.stale + dc.extra + coalesce(dc.different, 0) AS drift,
       dc.finished_at                         AS drift_checked_at,
       sf.since                               AS failing_since,
       sf.failure,
       -- Who runs the mapping now: null while no worker holds its lease (none
       -- runs for the org, or the mapping is paused or in error), where
       -- state still said 'synced' for a worker that had stopped.
       CASE WHEN m.inbound_lease_until > pg_catalog.now() THEN m.inbound_owner END AS worker
FROM pgforce.mapping m
JOIN pgforce.org o ON o.name = m.org
LEFT JOIN LATERAL (
    SELECT pg_catalog.count(*) AS backlog, pg_catalog.min(x.created_at) AS oldest
    FROM pgforce.outbox x WHERE x.mapping_id = m.id
) ob ON true
LEFT JOIN LATERAL (
    SELECT pg_catalog.count(*) AS open_errors
    FROM pgforce.error e WHERE e.mapping_id = m.id AND e.state IN ('open', 'retrying')
) er ON true
LEFT JOIN LATERAL (
    -- The latest drift check that finished: what differed then (repaired
    -- since by reading those records again).
    SELECT c.missing, c.stale, c.extra, c.different, c.finished_at
    FROM pgforce.drift_check c WHERE c.mapping_id = m.id AND c.finished_at IS NOT NULL AND c.error IS NULL
    ORDER BY c.id DESC LIMIT 1
) dc ON true
LEFT JOIN LATERAL (
    -- Attempts the worker is retrying (see 128_failing): since the first
    -- failure of either direction, and the latest failure of each.
    SELECT pg_catalog.min(f.since) AS since,
           pg_catalog.string_agg(pg_catalog.format('%s: %s (%s attempt%s since %s)', f.direction, f.message, f.attempts,
                                                   CASE WHEN f.attempts = 1 THEN '' ELSE 's' END,
                                                   pg_catalog.to_char(f.since, 'YYYY-MM-DD HH24:MI:SS TZ')),
                                 '; ' ORDER BY f.direction) AS failure
    FROM pgforce.sync_failure f
    -- Nothing is tried while the mapping is paused, nor written from a
    -- read_only one: a failure of before stays until a worker's attempt
    -- works, which may be long after.
    WHERE f.mapping_id = m.id AND NOT (m.paused OR o.paused) AND (f.direction = 'inbound' OR m.mode = 'read_write')
) sf ON true;

COMMENT ON VIEW pgforce.status IS 'One row per mapping: state, rows, outbound backlog and its age, open errors, last change in each direction, the outbound feed mode, changes blocked behind a failed insert, what the latest drift check found, since when and why the worker retries a failing sync, and which worker runs the mapping.';
