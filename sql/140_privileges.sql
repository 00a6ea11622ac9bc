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
          AND p.proname IN ('pause', 'resume', 'reload', 'retry', 'retry_all', 'ignore', 'revert', 'resolve', 'check_drift')
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', v_function);
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END
$$;

-- What makes the search_path in force (the session's, or one a function
-- set) unsafe to run pgforce's statements under, at most five entries:
-- a schema on it that a role other than the current one can create
-- objects in ('public (can be written by app)'), and an operator or
-- function on it that such a role owns and that has the name of one of
-- pg_catalog's ('operator public.= (character varying, character
-- varying) of app'). Postgres picks such an operator or function over
-- pg_catalog's when its argument types fit better: one taking exactly
-- (varchar, varchar) wins over pg_catalog's text = text, which varchar
-- reaches only by a cast, even with pg_catalog searched first. Its code
-- then runs as whoever runs a statement with an unqualified = on varchar
-- columns: the worker, in its own statements, in pgforce's functions it
-- calls and in the application's triggers its writes fire. Superusers,
-- and roles that are members of the current one or of pgforce's owner
-- (they have those rights already), are trusted; Postgres's predefined roles create nothing, and
-- Postgres never looks for operators and functions in pg_temp. Postgres
-- 15 and later give PUBLIC no CREATE on schema public, so a database made
-- by one is clean unless someone granted it. Every operator here is named
-- in full: the function runs under the very search_path it inspects.
CREATE FUNCTION pgforce._unsafe_search_path() RETURNS text[]
LANGUAGE sql STABLE AS $$
    WITH path AS (
        SELECT n.oid, n.nspname
        FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) AS s(name)
        JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) s.name
        WHERE n.oid OPERATOR(pg_catalog.<>) pg_catalog.pg_my_temp_schema()
          AND n.oid OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace
    ), untrusted AS (
        SELECT r.oid, r.rolname FROM pg_catalog.pg_roles r
        WHERE NOT r.rolsuper AND r.rolname::pg_catalog.text OPERATOR(pg_catalog.!~~) 'pg\_%'
          AND NOT pg_catalog.pg_has_role(r.oid, CURRENT_USER, 'MEMBER')
          AND NOT pg_catalog.pg_has_role(r.oid, (SELECT n.nspowner FROM pg_catalog.pg_namespace n
                                                 WHERE n.nspname OPERATOR(pg_catalog.=) 'pgforce'::pg_catalog.name), 'MEMBER')
    ), found AS (
        SELECT pg_catalog.format('%s (can be written by %s)', p.nspname, r.rolname) AS entry
        FROM path p, untrusted r
        WHERE pg_catalog.has_schema_privilege(r.oid, p.oid, 'CREATE')
        UNION ALL
        SELECT pg_catalog.format('operator %s.%s(%s, %s) of %s', p.nspname, o.oprname,
                                 o.oprleft::pg_catalog.regtype, o.oprright::pg_catalog.regtype, r.rolname)
        FROM pg_catalog.pg_operator o
        JOIN path p ON p.oid OPERATOR(pg_catalog.=) o.oprnamespace
        JOIN untrusted r ON r.oid OPERATOR(pg_catalog.=) o.oprowner
        WHERE EXISTS (SELECT FROM pg_catalog.pg_operator c
                      WHERE c.oprnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
                        AND c.oprname OPERATOR(pg_catalog.=) o.oprname)
        UNION ALL
        SELECT pg_catalog.format('function %s.%s(%s) of %s', p.nspname, f.proname,
                                 pg_catalog.pg_get_function_identity_arguments(f.oid), r.rolname)
        FROM pg_catalog.pg_proc f
        JOIN path p ON p.oid OPERATOR(pg_catalog.=) f.pronamespace
        JOIN untrusted r ON r.oid OPERATOR(pg_catalog.=) f.proowner
        WHERE EXISTS (SELECT FROM pg_catalog.pg_proc c
                      WHERE c.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace::pg_catalog.oid
                        AND c.proname OPERATOR(pg_catalog.=) f.proname)
    )
    SELECT coalesce(pg_catalog.array_agg(f.entry ORDER BY f.entry), '{}')
    FROM (SELECT DISTINCT entry FROM found ORDER BY entry LIMIT 5) f
$$;

COMMENT ON FUNCTION pgforce._unsafe_search_path() IS 'What makes the search_path in force unsafe for pgforce''s statements: schemas other roles can create in, and operators or functions of theirs named like pg_catalog''s (see pgforce.resolve and the worker''s start).'
;
