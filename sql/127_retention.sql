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

-- Deletes up to p_limit rows of history of org p_org that are older than
-- its history_retention, and returns how many it deleted: the worker calls
-- it again while it deletes a full batch, so that no transaction holds
-- many rows.
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
    DELETE FROM pgforce.error e
    WHERE e.id IN (SELECT x.id FROM pgforce.error x JOIN pgforce.mapping m ON m.id = x.mapping_id
                   WHERE m.org = p_org AND x.state = 'resolved' AND x.resolved_at < pg_catalog.now() - v_keep
                   LIMIT p_limit);
    GET DIAGNOSTICS v_errors = ROW_COUNT;
    DELETE FROM pgforce.drift_check c
    WHERE c.id IN (SELECT x.id FROM pgforce.drift_check x JOIN pgforce.mapping m ON m.id = x.mapping_id
                   WHERE m.org = p_org AND x.finished_at < pg_catalog.now() - v_keep
                     AND x.id < (SELECT pg_catalog.max(y.id) FROM pgforce.drift_check y
                                 WHERE y.mapping_id = x.mapping_id AND y.finished_at IS NOT NULL)
                     -- pgforce.status shows the latest check that succeeded,
                     -- which failed ones since do not replace.
                     AND x.id OPERATOR(pg_catalog.<>) coalesce((SELECT pg_catalog.max(z.id) FROM pgforce.drift_check z
                                                                WHERE z.mapping_id = x.mapping_id AND z.finished_at IS NOT NULL AND z.error IS NULL), 0)
                   LIMIT p_limit);
    GET DIAGNOSTICS v_checks = ROW_COUNT;
    -- Ids read by a check that is no longer running (a crash stopped it,
    -- and it finished later or its mapping went).
    DELETE FROM pgforce.drift_seen s
    WHERE s.check_id IN (SELECT DISTINCT x.check_id FROM pgforce.drift_seen x
                         WHERE NOT EXISTS (SELECT FROM pgforce.drift_check c WHERE c.id = x.check_id AND c.finished_at IS NULL));
    GET DIAGNOSTICS v_seen = ROW_COUNT;
    -- Ids read by a reload of a mapping deleted since.
    DELETE FROM pgforce.inbound_seen s
    WHERE NOT EXISTS (SELECT FROM pgforce.mapping m WHERE m.id = s.mapping_id);
    GET DIAGNOSTICS v_reload = ROW_COUNT;
    RETURN v_errors + v_checks + v_seen + v_reload;
END
$$;

COMMENT ON FUNCTION pgforce.prune_history(text, integer) IS 'Worker use: delete an org''s resolved errors and past drift checks older than its history_retention.';
