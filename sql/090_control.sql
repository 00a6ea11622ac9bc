-- 090_control: pause, resume and reload a mapping.
--
-- These record what the user wants; the worker obeys on its next cycle.
-- They run as their owner (see 140_privileges), so the user they name is
-- session_user, the one who logged in.
-- Each takes the mapping's id, or its sobject name and org ('default'):
--   SELECT pgforce.pause(3);  SELECT pgforce.pause('Account');
--   SELECT pgforce.reload('Account', 'sandbox');

-- Pausing stops reads from Salesforce and writes to it; capture continues,
-- so changes made meanwhile are sent after resume.
CREATE FUNCTION pgforce.pause(p_mapping_id integer) RETURNS pgforce.mapping
LANGUAGE plpgsql AS $$
DECLARE
    v_mapping pgforce.mapping := pgforce._mapping_row(p_mapping_id);
BEGIN
    IF v_mapping.paused THEN
        RETURN v_mapping;
    END IF;
    UPDATE pgforce.mapping m
    SET paused = true, state = 'paused', state_detail = 'paused by ' || session_user || ' (was ' || m.state || ')'
    WHERE m.id = p_mapping_id
    RETURNING * INTO v_mapping;
    RETURN v_mapping;
END
$$;

-- Resuming picks up where the mapping stopped: a mapping that had loaded
-- goes back to synced (the worker catches up from its watermark), one that
-- had not starts over from new. resumed_at tells the outbound side to
-- check its first updates against Salesforce (see checkCatchUp in
-- worker/outbound).
CREATE FUNCTION pgforce.resume(p_mapping_id integer) RETURNS pgforce.mapping
LANGUAGE plpgsql AS $$
DECLARE
    v_mapping pgforce.mapping := pgforce._mapping_row(p_mapping_id);
BEGIN
    IF NOT v_mapping.paused THEN
        RETURN v_mapping;
    END IF;
    UPDATE pgforce.mapping m
    SET paused = false, resumed_at = pg_catalog.now(),
        state = CASE WHEN m.inbound_watermark IS NOT NULL OR m.cdc_replay_id IS NOT NULL THEN 'synced' ELSE 'new' END,
        state_detail = 'resumed by ' || session_user
    WHERE m.id = p_mapping_id
    RETURNING * INTO v_mapping;
    RETURN v_mapping;
END
$$;

-- The mapping, refused when it or its org is paused: what is asked of the
-- worker (a reload, a drift check) would wait unseen until a resume. An
-- org's pause (UPDATE pgforce.org SET paused = true) stops every mapping
-- of the org as a pause of each would.
CREATE FUNCTION pgforce._unpaused_mapping(p_mapping_id integer) RETURNS pgforce.mapping
LANGUAGE plpgsql AS $$
DECLARE
    v_mapping pgforce.mapping := pgforce._mapping_row(p_mapping_id);
BEGIN
    IF v_mapping.paused THEN
        RAISE EXCEPTION 'pgforce: mapping % (%) is paused', p_mapping_id, v_mapping.sobject
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Resume it first: SELECT pgforce.resume(%s);', p_mapping_id);
    END IF;
    IF EXISTS (SELECT FROM pgforce.org o WHERE o.name = v_mapping.org AND o.paused) THEN
        RAISE EXCEPTION 'pgforce: org % of mapping % (%) is paused', v_mapping.org, p_mapping_id, v_mapping.sobject
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = pg_catalog.format('Resume the org first: UPDATE pgforce.org SET paused = false WHERE name = %L;', v_mapping.org);
    END IF;
    RETURN v_mapping;
END
$$;

-- Reloading forgets the inbound position so that the worker loads the whole
-- object again; pending outbound changes are kept and still sent.
CREATE FUNCTION pgforce.reload(p_mapping_id integer) RETURNS pgforce.mapping
LANGUAGE plpgsql AS $$
DECLARE
    v_mapping pgforce.mapping := pgforce._unpaused_mapping(p_mapping_id);
BEGIN
    UPDATE pgforce.mapping m
    SET reload_requested_at = pg_catalog.now(), inbound_watermark = NULL, cdc_replay_id = NULL,
        state = 'loading', state_detail = 'reload requested by ' || session_user
    WHERE m.id = p_mapping_id
    RETURNING * INTO v_mapping;
    RETURN v_mapping;
END
$$;

CREATE FUNCTION pgforce.pause(p_sobject text, p_org text DEFAULT 'default') RETURNS pgforce.mapping
LANGUAGE sql AS $$ SELECT pgforce.pause(pgforce._mapping_id(p_sobject, p_org)) $$;
CREATE FUNCTION pgforce.resume(p_sobject text, p_org text DEFAULT 'default') RETURNS pgforce.mapping
LANGUAGE sql AS $$ SELECT pgforce.resume(pgforce._mapping_id(p_sobject, p_org)) $$;
CREATE FUNCTION pgforce.reload(p_sobject text, p_org text DEFAULT 'default') RETURNS pgforce.mapping
LANGUAGE sql AS $$ SELECT pgforce.reload(pgforce._mapping_id(p_sobject, p_org)) $$;

COMMENT ON FUNCTION pgforce.pause(integer) IS 'Pause a mapping (by id): the worker stops syncing it; capture continues.';
COMMENT ON FUNCTION pgforce.pause(text, text) IS 'Pause a mapping (by sobject and org).';
COMMENT ON FUNCTION pgforce.resume(integer) IS 'Resume a paused mapping (by id) where it stopped.';
COMMENT ON FUNCTION pgforce.resume(text, text) IS 'Resume a paused mapping (by sobject and org).';
COMMENT ON FUNCTION pgforce.reload(integer) IS 'Reload a mapping (by id) from Salesforce; pending outbound changes are kept.';
COMMENT ON FUNCTION pgforce.reload(text, text) IS 'Reload a mapping (by sobject and org).';
