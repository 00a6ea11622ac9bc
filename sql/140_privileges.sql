-- 140_privileges: what roles other than pgforce's owner (the role that
-- installs it and runs the worker) may do.
--
-- The functions users operate with run as their owner, with search_path
-- pinned: an operator's role needs EXECUTE on them and no right on
-- pgforce's tables. Rights on pgforce.outbox would let it queue writes that
-- the worker sends to Salesforce as they are. EXECUTE is taken from PUBLIC,
-- so that USAGE on the schema (granted to read pgforce.status, say) is not
-- enough to pause a mapping or drop a queued change; the README's "Roles"
-- says what to grant.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pgforce'::regnamespace
          AND p.proname IN ('pause', 'resume', 'reload', 'retry', 'retry_all', 'ignore', 'revert', 'resolve')
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', v_function);
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END
$$;
