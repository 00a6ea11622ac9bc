-- 128_failing: the mappings whose sync the worker is retrying after a
-- failure, for pgforce.status.
--
-- The worker retries by itself whatever needs no user action: Salesforce
-- unavailable, a login that stopped working, a change event the table
-- cannot take until the application fixes it, a poll that failed. While
-- it did, pgforce.status said 'synced', since the mapping is set up and
-- nothing needs pgforce.resume; only state_detail, which also says
-- 'streaming change events', told, and the outbound side's failures went
-- to the log only. Monitoring wants one column to alert on, and when it
-- started: a mapping that has failed for a minute is a blip, one that has
-- failed for an hour is an outage.
--
-- One row per mapping and direction while its attempts fail, written by
-- the worker: inserted at the first failure, updated at the next ones,
-- deleted by the first attempt that works. It is a table of its own, not
-- columns of pgforce.mapping, because every update of a mapping wakes
-- every worker to read the mappings again.
CREATE TABLE pgforce.sync_failure (
    mapping_id integer     NOT NULL REFERENCES pgforce.mapping (id) ON DELETE CASCADE,
    direction  text        NOT NULL,
    since      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attempts   integer     NOT NULL DEFAULT 1,
    message    text        NOT NULL,
    PRIMARY KEY (mapping_id, direction),
    CONSTRAINT sync_failure_direction_valid CHECK (direction IN ('inbound', 'outbound'))
);

COMMENT ON TABLE pgforce.sync_failure IS 'Mappings whose sync with Salesforce fails in one direction and is being retried: since when, how many attempts, the latest failure (written by the worker; gone once an attempt works).';

-- Records a failed attempt of p_direction of mapping p_mapping_id. since
-- keeps the first failure's time.
CREATE FUNCTION pgforce._sync_failed(p_mapping_id integer, p_direction text, p_message text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pgforce.sync_failure AS f (mapping_id, direction, message)
    SELECT m.id, p_direction, p_message FROM pgforce.mapping m WHERE m.id = p_mapping_id
    ON CONFLICT (mapping_id, direction) DO UPDATE
    SET last_at = pg_catalog.now(), attempts = f.attempts + 1, message = EXCLUDED.message
$$;

-- Says that an attempt of p_direction of mapping p_mapping_id worked.
CREATE FUNCTION pgforce._sync_recovered(p_mapping_id integer, p_direction text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM pgforce.sync_failure f WHERE f.mapping_id = p_mapping_id AND f.direction = p_direction
$$;
