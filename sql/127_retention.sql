-- 127_retention: how long pgforce keeps what it has finished with.
--
-- A resolved error and a past drift check are history: nothing reads them
-- but people. Kept for ever, pgforce.error and pgforce.drift_check grew
-- with every error and every scheduled check for as long as pgforce ran.
-- The worker prunes its org's history every hour, keeping
-- pgforce.org.history_retention of it (31 days by default, as Heroku
-- Connect keeps its trigger log archive). Open, retrying and ignored
-- errors are never pruned (an ignored one keeps its refused values in the
-- row), nor the latest finished drift check of a mapping, which
-- pgforce.status shows and the schedule counts from, nor one in progress.
-- The rows left behind by a drift check or a reload that was interrupted
-- go too.

-- What the prune looks for, so that an hourly run reads about what it
-- deletes. Without them it read the whole of pgforce.error once per
-- mapping of the org (1.3 s for 1,000,000 errors and four mappings, to
-- delete the 800 that expired in the hour) and every drift check of the
-- org. Errors are inserted open, which error_resolved_idx does not hold:
-- inserting them costs what it did. It gains an entry when an error is
-- resolved, an update of state, a column of error_open_idx, so never a
-- HOT one anyway. Drift checks come every ten minutes per mapping at most.
CREATE INDEX error_resolved_idx ON pgforce.error (mapping_id, resolved_at) WHERE state = 'resolved';
CREATE INDEX drift_check_finished_idx ON pgforce.drift_check (mapping_id, finished_at);

-- Deletes up to p_limit rows of each kind of history of org p_org that is
-- older than its history_retention, and returns how many it deleted: the
-- worker calls it again while it deletes a full batch, so that no
-- transaction holds many rows.
CREATE FUNCTION pgforce.prune_history(p_org text, p_limit integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_keep    interval;
    v_errors  bigint;
    v_checks  bigint;
    v_seen    bigint;
    v_reload  bigint;
BEGIN
    SELECT o.history_retention INTO v_keep FROM pgforce.org o WHERE o.name = p_org;
    IF v_keep IS NULL THEN
        RETURN 0;
    END IF;
    -- Here and for the checks, the rows are looked up by id from an
    -- array built once, never joined: a join was planned, on the
    -- statistics of a small table, as a scan of the whole of it.
    DELETE FROM pgforce.error e
    WHERE e.id = ANY (ARRAY(SELECT x.id FROM pgforce.error x JOIN pgforce.mapping m ON m.id = x.mapping_id
                            WHERE m.org = p_org AND x.state = 'resolved' AND x.resolved_at < pg_catalog.now() - v_keep
                            LIMIT p_limit));
    GET DIAGNOSTICS v_errors = ROW_COUNT;
    DELETE FROM pgforce.drift_check c
    WHERE c.id = ANY (ARRAY(SELECT x.id FROM pgforce.drift_check x JOIN pgforce.mapping m ON m.id = x.mapping_id
                            WHERE m.org = p_org AND x.finished_at < pg_catalog.now() - v_keep
                              AND x.id < (SELECT pg_catalog.max(y.id) FROM pgforce.drift_check y
                                          WHERE y.mapping_id = x.mapping_id AND y.finished_at IS NOT NULL)
                              -- pgforce.status shows the latest check that succeeded,
                              -- which failed ones since do not replace.
                              AND x.id OPERATOR(pg_catalog.<>) coalesce((SELECT pg_catalog.max(z.id) FROM pgforce.drift_check z
                                                                         WHERE z.mapping_id = x.mapping_id AND z.finished_at IS NOT NULL AND z.error IS NULL), 0)
                            LIMIT p_limit));
    GET DIAGNOSTICS v_checks = ROW_COUNT;
    -- Ids read by a check that is no longer running (a crash stopped it,
    -- and it finished later or its mapping went). The table also holds
    -- every Id the running checks have read, millions for a large object,
    -- and each run read all of it twice. Now the checks it holds ids of
    -- are found with one probe of its primary key each (the recursive
    -- query steps from one check_id to the next), and a stopped one's ids
    -- are read in key order (so through the index, whatever the planner
    -- estimates a check holds), p_limit at most.
    DELETE FROM pgforce.drift_seen s
    WHERE s.ctid = ANY (ARRAY(
        WITH RECURSIVE checks (id) AS (
            SELECT pg_catalog.min(x.check_id) FROM pgforce.drift_seen x
            UNION ALL
            SELECT (SELECT pg_catalog.min(x.check_id) FROM pgforce.drift_seen x WHERE x.check_id > k.id)
            FROM checks k WHERE k.id IS NOT NULL
        )
        SELECT x.ctid
        FROM checks k
        CROSS JOIN LATERAL (SELECT y.ctid FROM pgforce.drift_seen y WHERE y.check_id = k.id
                            ORDER BY y.sfid LIMIT p_limit) x
        -- OFFSET 0 keeps this a probe of drift_check's primary key per
        -- check: made an anti join, it read the whole of
        -- drift_check_finished_idx for the checks not finished.
        WHERE k.id IS NOT NULL
          AND NOT EXISTS (SELECT FROM pgforce.drift_check c WHERE c.id = k.id AND c.finished_at IS NULL OFFSET 0)
        LIMIT p_limit));
    GET DIAGNOSTICS v_seen = ROW_COUNT;
    -- Ids read by a reload of a mapping deleted since, found as above:
    -- the table holds those of the reloads in progress too, unread.
    DELETE FROM pgforce.inbound_seen s
    WHERE s.ctid = ANY (ARRAY(
        WITH RECURSIVE mappings (id) AS (
            SELECT pg_catalog.min(x.mapping_id) FROM pgforce.inbound_seen x
            UNION ALL
            SELECT (SELECT pg_catalog.min(x.mapping_id) FROM pgforce.inbound_seen x WHERE x.mapping_id > g.id)
            FROM mappings g WHERE g.id IS NOT NULL
        )
        SELECT x.ctid
        FROM mappings g
        CROSS JOIN LATERAL (SELECT y.ctid FROM pgforce.inbound_seen y WHERE y.mapping_id = g.id
                            ORDER BY y.sfid LIMIT p_limit) x
        WHERE g.id IS NOT NULL
          AND NOT EXISTS (SELECT FROM pgforce.mapping m WHERE m.id = g.id)
        LIMIT p_limit));
    GET DIAGNOSTICS v_reload = ROW_COUNT;
    RETURN v_errors + v_checks + v_seen + v_reload;
END
$$;

COMMENT ON FUNCTION pgforce.prune_history(text, integer) IS 'Worker use: delete an org''s resolved errors and past drift checks older than its history_retention.';
