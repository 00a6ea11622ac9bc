-- 060_capture: triggers on mapped tables.
--
-- Capture is on the application's hot path, so it is set-based: one
-- statement-level AFTER trigger per operation reads the statement's
-- transition tables and appends every changed row to pgforce.outbox with a
-- single INSERT ... SELECT. The only per-row work is the BEFORE trigger that
-- keeps _hc_lastop/_hc_err honest (and, in a statement that sets id, the
-- check that refuses a change of id), and, in a transaction where a
-- statement's own triggers changed its rows, a lookup of each row (see
-- _nested_capture_flag). An UPDATE that sets no captured
-- column does not call it (the worker's write-back of a 5,000-record batch
-- spent a tenth of its time calling it for nothing), and the worker's
-- direct loads switch it off; see _install_triggers.
--
-- The worker marks its own writes with SET pgforce.origin = 'salesforce';
-- those are never captured (no sync loops) and are stamped SYNCED, except
-- that a FAILED or PENDING row stays so unless the worker says otherwise.

-- The advisory lock that a worker waiting for NOTIFY wake-ups holds, or
-- queues for, while it does not stream the outbox or its stream lags
-- behind the server's WAL (worker/feed). Capture
-- sends its wake-up only when a worker waits for one: it tries this lock in
-- shared mode, which fails while a worker holds it or queues for it, and
-- otherwise keeps the shared lock until the transaction ends.
--
-- Why not NOTIFY always: a transaction that notifies takes one lock for the
-- whole cluster before it commits and holds it until the commit is flushed,
-- so that notifications are queued in commit order. Every capturing
-- transaction then committed one after another, each waiting for the
-- others' WAL flushes. Single-row UPDATEs from 8 clients (make bench, fsync
-- on) ran at 0.29 of the unmapped table's TPS with it, 0.58 without.
--
-- Why the lock closes every gap: a worker granted the lock has waited for
-- every transaction holding it in shared mode to end, so what those
-- captured is in the outbox when it looks, which it does then; every
-- capture after that fails the try and notifies. While its request waits,
-- the tries fail too (a request conflicting with a waiting one is not
-- granted), so those notify as well; a worker that was not yet listening
-- looks at the outbox once it listens.
CREATE FUNCTION pgforce._wakeup_lock() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 31638887045686118::bigint -- the bytes of "pgforce", plus one (pgforce install takes "pgforce")
$$;

-- Columns of a mapped table that describe sync state rather than data and
-- are never sent to Salesforce (used by the worker with to_jsonb(row) - ...).
CREATE FUNCTION pgforce._uncaptured_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['id', '_hc_lastop', '_hc_err']
$$;

-- BEFORE INSERT OR UPDATE, FOR EACH ROW: _hc_lastop is PENDING after a user
-- write and SYNCED after the worker's, like Heroku Connect's status trigger.
-- The worker may set another value (e.g. FAILED with _hc_err) explicitly,
-- and must set SYNCED explicitly to settle a FAILED or PENDING row.
--
-- This returns the function's source. p_changed holds one condition over
-- NEW and OLD per column that capture records, true when a user's UPDATE
-- changed that column; an update that changed none of them leaves the
-- status alone, because nothing was captured and nothing will settle it.
-- (Comparing whole rows marked a row PENDING for ever when a user set a
-- column of their own, or sfid.) read_write tables get a function of their
-- own that compares their captured columns, pgforce._status_<mapping id>();
-- read_only tables share pgforce._status(), which users' writes never
-- reach.
--
-- The conditions are the branches of one IF ... ELSIF chain rather than
-- one expression, because PL/pgSQL prepares an expression again in every
-- transaction the first time it evaluates it, and a single-row UPDATE is
-- usually a transaction of its own: the chain prepares the conditions up
-- to the first changed column and no further. Counted with valgrind, in
-- instructions per single-row UPDATE committed on its own, capture's cost
-- fell from 1.14 million to 0.87 million with 50 mapped fields (the 3rd and
-- 25th changed; the UPDATE itself costs 0.15 million) and from 294,000 to
-- 283,000 with 5 (the 2nd and 3rd changed); a 100-row UPDATE's rose by
-- 0.5%, the price of evaluating the conditions one by one.
CREATE FUNCTION pgforce._status_source(p_changed text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_catalog.format($source$
BEGIN
    IF pg_catalog.current_setting('pgforce.origin', true) = 'salesforce' THEN
        IF TG_OP = 'INSERT' THEN
            IF NEW._hc_lastop IS NULL THEN
                NEW._hc_lastop := 'SYNCED';
                NEW._hc_err := NULL;
            END IF;
        -- A FAILED row keeps its open error and a PENDING row its queued
        -- changes whatever else the worker writes into it: only the writer
        -- that settles them (the outbound result, a revert, a resolve, an
        -- inbound apply that finds nothing queued) says SYNCED, explicitly.
        -- (Operators named in full: see _write_capture_functions.)
        ELSIF coalesce(NEW._hc_lastop::pg_catalog.text OPERATOR(pg_catalog.=) OLD._hc_lastop::pg_catalog.text,
                       NEW._hc_lastop IS NULL AND OLD._hc_lastop IS NULL)
          AND coalesce(OLD._hc_lastop::pg_catalog.text OPERATOR(pg_catalog.<>) ALL (ARRAY['FAILED', 'PENDING']::pg_catalog.text[]), true) THEN
            NEW._hc_lastop := 'SYNCED';
            NEW._hc_err := NULL;
        END IF;
        RETURN NEW;
    END IF;%s
    NEW._hc_lastop := 'PENDING';
    NEW._hc_err := NULL;
    RETURN NEW;
END
$source$, (SELECT $update$
    IF TG_OP = 'UPDATE' THEN$update$ || pg_catalog.string_agg(pg_catalog.format($branch$
        %s %s THEN
            NULL;$branch$, CASE WHEN u.i = 1 THEN 'IF' ELSE 'ELSIF' END, u.c), '' ORDER BY u.i) || $else$
        ELSE
            RETURN NEW;
        END IF;
    END IF;$else$
    FROM pg_catalog.unnest(p_changed) WITH ORDINALITY AS u(c, i)))
$$;

DO $$
BEGIN
    EXECUTE pg_catalog.format('CREATE FUNCTION pgforce._status() RETURNS trigger LANGUAGE plpgsql AS %L',
        pgforce._status_source('{}'));
END
$$;

-- The text of jsonb_build_object('<col>', <prefix>.<col>, ...) over
-- p_columns, split into calls of at most 50 pairs joined with || because a
-- function takes at most 100 arguments.
CREATE FUNCTION pgforce._jsonb_of(p_prefix text, p_columns text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(pg_catalog.string_agg(chunk, ' OPERATOR(pg_catalog.||) ' ORDER BY part), '''{}''::jsonb')
    FROM (
        SELECT (u.i - 1) / 50 AS part,
               'pg_catalog.jsonb_build_object(' || pg_catalog.string_agg(pg_catalog.format('%L, %I.%I', u.c, p_prefix, u.c), ', ' ORDER BY u.i) || ')' AS chunk
        FROM pg_catalog.unnest(p_columns) WITH ORDINALITY AS u(c, i)
        GROUP BY (u.i - 1) / 50
    ) chunks
$$;

-- The name of a transaction-local setting that says a capture of the
-- mapping's table ran inside another statement's triggers in this
-- transaction.
--
-- A statement's AFTER ROW triggers, and the user's statement-level
-- triggers that sort before pgforce's, run before its capture: a change
-- they make to the statement's rows (an AFTER INSERT trigger that fills in
-- a column with an UPDATE, say) is captured first, and the statement's
-- own capture after it, with the values the rows had when the statement
-- itself wrote them. The worker, taking each record's changes in outbox
-- order, then sent the older values last: Salesforce kept them, and the
-- trigger's change was lost. (An insert even replaced everything queued
-- before it, and a row the triggers deleted was still inserted.) Such a
-- capture sets this flag, and while it is set the table's captures take
-- their new values from the rows as they are at the end of the statement,
-- with an index lookup per row, for the rest of the transaction; otherwise
-- they read the transition table, which is cheaper. (Measured with
-- valgrind, the test costs a single-row UPDATE about 6,500 instructions of
-- its 380,000; a 5,000-row UPDATE with the flag set took 78 ms against
-- 72.) The lookup reads the table as the capture function's owner, the
-- role that last installed the mapping's triggers (the worker, or whoever
-- changed the mapping): without SELECT on the table such a statement
-- fails, and row-level security forced on that role would hide rows from
-- it, whose changes would then not be queued. A DELETE whose triggers put
-- a row of the same id back is not covered: its delete is queued after
-- the row's new insert.
CREATE FUNCTION pgforce._nested_capture_flag(p_mapping_id integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'pgforce.nested_capture_' || p_mapping_id
$$;

-- Writes the capture functions of one mapping, AFTER ... FOR EACH STATEMENT
-- trigger functions over the transition tables pgforce_new/pgforce_old that
-- append every changed row to pgforce.outbox with one INSERT ... SELECT:
-- pgforce._capture_<id>() for INSERT and DELETE, and
-- pgforce._capture_update_<id>() for UPDATE; and its status trigger
-- function pgforce._status_<id>() (see _status_source). The mapped columns are spelled
-- out because comparing column by column costs about a twentieth of a
-- generic to_jsonb/jsonb_each diff (measured: 0.18 ms against 3.2 ms for
-- 100 rows), and because it captures exactly the mapped fields, never the
-- columns users add for themselves.
--
-- UPDATE has a function of its own because its statement joins the old and
-- new transition tables, and PL/pgSQL plans that join for the row counts of
-- the statement that first fires it in a session, then keeps the plan until
-- something invalidates it (an ANALYZE of the outbox, DDL). After a
-- single-row UPDATE that plan is a nested loop, so a session that later
-- updated 5,000 rows compared every old row with every new one: 5.9 s
-- against 0.1 s (50,000 rows would take minutes). Nested loops are off in
-- that function only: the DELETE branch probes outbox_record_idx with them.
-- (The lookups of _nested_capture_flag's path are LATERAL subqueries kept
-- apart by OFFSET 0, a nested loop whatever the setting: pulled up into a
-- join, they were planned as a hash join over the whole table.)
--
-- SECURITY DEFINER lets application roles capture without any grant on
-- pgforce.outbox; search_path is pinned and every name is qualified. The
-- status function runs with the application's search_path, once per row
-- that turns PENDING, where pinning it would cost a configuration change
-- per call; so it names its one operator, pg_catalog's =, in full (IS
-- DISTINCT FROM would look = up in the application's search_path, where a
-- schema anyone can write to may come before pg_catalog).
CREATE FUNCTION pgforce._write_capture_functions(p_mapping_id integer, p_table regclass, p_columns text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_changed text := 'false';
    v_status_tests text[] := '{}';
    v_new     text := '''{}''::jsonb';
    v_old     text := '''{}''::jsonb';
    v_header  text := pg_catalog.format('-- Generated by pgforce._write_capture_functions for mapping %s (%s).', p_mapping_id, p_table);
    -- The worker's own writes are never captured. Checked here rather than
    -- in the trigger's WHEN clause, which Postgres would parse again for
    -- every statement of every user.
    v_origin  text := $origin$
    IF pg_catalog.current_setting('pgforce.origin', true) = 'salesforce' THEN
        RETURN NULL;
    END IF;$origin$;
    -- A wake-up for a worker that waits for one: one that does not stream
    -- the outbox, or whose stream lags (see _wakeup_lock). A streaming
    -- worker hears of the commit from the stream. Postgres folds identical
    -- notifications into one per transaction.
    v_notify  text := pg_catalog.format($notify$
    IF NOT pg_catalog.pg_try_advisory_xact_lock_shared(%L::bigint) THEN
        PERFORM pg_catalog.pg_notify('pgforce_outbox', '');
    END IF;
    RETURN NULL;$notify$, pgforce._wakeup_lock());
    -- Changes that the triggers of a statement make to its rows are
    -- captured before the statement's own (see _nested_capture_flag). A
    -- capture inside another statement's triggers, or after one in this
    -- transaction, reads the rows as they are and sets the flag; one
    -- expression tells them apart, since PL/pgSQL prepares each
    -- expression again in every transaction.
    v_nested  text := pg_catalog.format($nested$pg_catalog.pg_trigger_depth() > 1 OR pg_catalog.current_setting(%L, true) = 'on'$nested$,
        pgforce._nested_capture_flag(p_mapping_id));
    v_mark    text := pg_catalog.format($mark$PERFORM pg_catalog.set_config(%L, 'on', true);$mark$, pgforce._nested_capture_flag(p_mapping_id));
    -- The row as it is now, for each row r of pgforce_new (1) or o of
    -- pgforce_old (2).
    v_live    text[] := (SELECT pg_catalog.array_agg(pg_catalog.format('LATERAL (SELECT t.* FROM %I.%I t WHERE t.id OPERATOR(pg_catalog.=) %I.id OFFSET 0)',
                                     n.nspname, c.relname, a.alias) ORDER BY a.i)
                         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
                              pg_catalog.unnest(ARRAY['r', 'o']) WITH ORDINALITY AS a(alias, i)
                         WHERE c.oid = p_table);
BEGIN
    -- For an UPDATE, only the changed columns are turned into jsonb: each
    -- becomes a one-pair object (or '{}') and the pieces are concatenated.
    -- Converting a value to jsonb is the dearest step of capture (a type
    -- lookup per value), so unchanged columns are never converted; this
    -- nearly halved the capture cost of a 100-row UPDATE compared with
    -- building whole objects and deleting the unchanged keys.
    IF pg_catalog.cardinality(p_columns) > 0 THEN
        SELECT '(' || pg_catalog.string_agg(pg_catalog.format('n.%I', c), ', ') || ') IS DISTINCT FROM ('
                   || pg_catalog.string_agg(pg_catalog.format('o.%I', c), ', ') || ')',
               pg_catalog.string_agg(pg_catalog.format(
                   'CASE WHEN n.%1$I IS DISTINCT FROM o.%1$I THEN pg_catalog.jsonb_build_object(%1$L, n.%1$I) ELSE ''{}''::jsonb END', c),
                   ' OPERATOR(pg_catalog.||) '),
               pg_catalog.string_agg(pg_catalog.format(
                   'CASE WHEN n.%1$I IS DISTINCT FROM o.%1$I THEN pg_catalog.jsonb_build_object(%1$L, o.%1$I) ELSE ''{}''::jsonb END', c),
                   ' OPERATOR(pg_catalog.||) '),
               pg_catalog.array_agg(pg_catalog.format(
                   'NOT COALESCE(NEW.%1$I OPERATOR(pg_catalog.=) OLD.%1$I, NEW.%1$I IS NULL AND OLD.%1$I IS NULL)', c))
        INTO v_changed, v_new, v_old, v_status_tests
        FROM pg_catalog.unnest(p_columns) c;
    END IF;

    EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION pgforce.%I() RETURNS trigger LANGUAGE plpgsql AS %L',
        '_status_' || p_mapping_id, v_header || pgforce._status_source(v_status_tests));
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION pgforce.%I() IS %L', '_status_' || p_mapping_id,
        pg_catalog.format('_hc_lastop/_hc_err of %s for pgforce mapping %s; generated by pgforce._install_triggers, do not edit.', p_table, p_mapping_id));

    PERFORM pgforce._define_capture_function(p_mapping_id, p_table, '_capture_' || p_mapping_id, false, pg_catalog.format($body$
%1$s
BEGIN%2$s
    IF TG_OP = 'INSERT' THEN
        IF %7$s THEN
            -- The rows as they are now: triggers of the statement may have
            -- changed or deleted them since, and those changes are queued
            -- already, ahead of the insert.
            INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new)
            SELECT %3$s, 'insert', n.id, n.sfid, %4$s
            FROM pgforce_new r, %8$s n;
            %9$s
        ELSE
            INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new)
            SELECT %3$s, 'insert', n.id, n.sfid, %4$s
            FROM pgforce_new n;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        -- A row that never reached Salesforce (no sfid) takes its pending
        -- insert and updates with it. Entries already claimed are in
        -- flight, and those claimed before (attempts) may have created the
        -- record with the answer lost, so the delete is recorded for the
        -- worker to finish (it looks for that record, see findCreated in
        -- worker/outbound).
        -- Asked only when such a row is among the deleted, and planned for
        -- the outbox as it is then: a plan kept from when the outbox was
        -- nearly empty read every queued entry of the mapping for each
        -- DELETE statement, synced rows or not: 5.4-5.8 ms for one row
        -- with 20,000 queued, against 0.7 ms.
        IF EXISTS (SELECT FROM pgforce_old o WHERE o.sfid IS NULL) THEN
            EXECUTE 'DELETE FROM pgforce.outbox ob USING pgforce_old o
                     WHERE o.sfid IS NULL AND ob.sfid IS NULL AND ob.mapping_id OPERATOR(pg_catalog.=) $1
                       AND ob.record_id OPERATOR(pg_catalog.=) o.id AND ob.claimed_at IS NULL AND ob.attempts OPERATOR(pg_catalog.=) 0'
                USING %3$s;
        END IF;
        -- The EXISTS is evaluated only for rows without an sfid.
        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, old)
        SELECT %3$s, 'delete', o.id, o.sfid, %5$s
        FROM pgforce_old o
        WHERE o.sfid IS NOT NULL
           OR EXISTS (SELECT FROM pgforce.outbox ob
                      WHERE ob.sfid IS NULL AND ob.mapping_id OPERATOR(pg_catalog.=) %3$s AND ob.record_id OPERATOR(pg_catalog.=) o.id
                        AND (ob.claimed_at IS NOT NULL OR ob.attempts OPERATOR(pg_catalog.>) 0));
        -- A row deleted by the triggers of an INSERT is not inserted.
        IF pg_catalog.pg_trigger_depth() > 1 THEN
            %9$s
        END IF;
    ELSE
        -- UPDATE has a function of its own; capturing it here would send
        -- every update to Salesforce as a delete.
        RAISE EXCEPTION 'pgforce: %% fired the capture function of INSERT and DELETE', TG_OP;
    END IF;%6$s
END
$body$, v_header, v_origin, p_mapping_id, pgforce._jsonb_of('n', p_columns), pgforce._jsonb_of('o', p_columns), v_notify,
        v_nested, v_live[1], v_mark));

    PERFORM pgforce._define_capture_function(p_mapping_id, p_table, '_capture_update_' || p_mapping_id, true, pg_catalog.format($body$
%1$s
BEGIN%2$s
    -- Only the changed columns, with their old values; rows whose mapped
    -- columns did not change produce no entry.
    IF %8$s THEN
        -- The rows as they are now, against their values before the
        -- statement: triggers of the statement may have changed them
        -- since, and those changes are queued already, ahead of this one.
        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new, old)
        SELECT %3$s, 'update', n.id, coalesce(n.sfid, o.sfid), %4$s, %5$s
        FROM pgforce_old o, %9$s n
        WHERE %6$s;
        %10$s
    ELSE
        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new, old)
        SELECT %3$s, 'update', n.id, coalesce(n.sfid, o.sfid), %4$s, %5$s
        FROM pgforce_new n
        JOIN pgforce_old o ON o.id OPERATOR(pg_catalog.=) n.id
        WHERE %6$s;
    END IF;%7$s
END
$body$, v_header, v_origin, p_mapping_id, v_new, v_old, v_changed, v_notify,
        v_nested, v_live[2], v_mark));
END
$$;

-- Creates or replaces one generated capture function, pgforce.<p_name>(),
-- planned without nested loops when p_no_nested_loops.
--
-- JIT compilation is off in every capture function. A session keeps its
-- plans, JIT decision included, until something invalidates them: after
-- one 20,000-row UPDATE of a table with five mapped columns, whose capture
-- statement the planner priced above jit_above_cost, each later single-row
-- UPDATE on that connection compiled the capture statement again, 34-41 ms
-- against 0.3-0.7 ms. (The worker's own sessions run with JIT off already;
-- these run in the application's.)
CREATE FUNCTION pgforce._define_capture_function(p_mapping_id integer, p_table regclass, p_name text, p_no_nested_loops boolean, p_body text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE pg_catalog.format(
        'CREATE OR REPLACE FUNCTION pgforce.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER'
        ' SET search_path = pg_catalog, pg_temp SET jit = off%s AS %L',
        p_name, CASE WHEN p_no_nested_loops THEN ' SET enable_nestloop = off' ELSE '' END, p_body);
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION pgforce.%I() IS %L', p_name,
        pg_catalog.format('Change capture of %s for pgforce mapping %s; generated by pgforce._install_triggers, do not edit.', p_table, p_mapping_id));
    -- Running as its owner, the function queues whatever rows its trigger
    -- hands it, and the worker sends them with the org's credentials: a
    -- role that could attach it to a table of its own would queue
    -- deletes and writes of any record it names. Postgres asks for EXECUTE
    -- when a trigger is created, not when it fires, so without it for
    -- PUBLIC only the owner (who installs the mapping's triggers) can
    -- attach it, and every writer of the mapped table still fires it.
    EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION pgforce.%I() FROM PUBLIC', p_name);
END
$$;

-- Drops the capture and status functions of a mapping.
-- Asked first rather than with DROP ... IF EXISTS, whose notice for every
-- function not there ("does not exist, skipping") reached the user's psql
-- on every change of a mapping.
CREATE FUNCTION pgforce._drop_capture_functions(p_mapping_id integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'pgforce'::regnamespace AND p.pronargs = 0
          AND p.proname IN ('_capture_' || p_mapping_id, '_capture_update_' || p_mapping_id, '_status_' || p_mapping_id)
    LOOP
        EXECUTE pg_catalog.format('DROP FUNCTION %s', v_function);
    END LOOP;
END
$$;

-- Whether the statement running is the worker's own write, for the
-- refusals below: the session says so (pgforce.origin), and the role
-- writing is pgforce's owner, the worker's role, or one of its members
-- (as inside pgforce's SECURITY DEFINER functions). Any role can set a
-- custom setting, and an application role that could write a read_only
-- table, saying it was the worker, changed it with nothing refused.
-- (Capture runs as its owner whoever writes, and cannot tell; an
-- application that says it is the worker only keeps its own writes from
-- Salesforce.)
CREATE FUNCTION pgforce._worker_writes() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.current_setting('pgforce.origin', true) OPERATOR(pg_catalog.=) 'salesforce'
       AND pg_catalog.pg_has_role(CURRENT_USER,
               (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'pgforce'), 'MEMBER')
$$;

-- BEFORE INSERT/UPDATE/DELETE, FOR EACH STATEMENT on read_only tables:
-- refuses every write but the worker's.
CREATE FUNCTION pgforce._refuse_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pgforce._worker_writes() THEN
        RETURN NULL;
    END IF;
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
    IF pgforce._worker_writes() THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pgforce: TRUNCATE of %.% is refused: it would silently desync the table from Salesforce', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'object_in_use',
              HINT = CASE WHEN TG_ARGV[1] = 'read_only'
                         THEN pg_catalog.format('Reload the table from Salesforce with SELECT pgforce.reload(%s);', TG_ARGV[0])
                         ELSE pg_catalog.format('DELETE the rows to delete them in Salesforce too, or reload the table from Salesforce with SELECT pgforce.reload(%s);', TG_ARGV[0])
                     END;
END
$$;

-- BEFORE UPDATE OF id, FOR EACH ROW on read_write tables. id is how every
-- queued change finds its row: capture pairs old and new values by id, and
-- the worker writes results back by id. An UPDATE that moved a row to
-- another id recorded nothing and left the row PENDING for ever. Being
-- column-specific, the trigger costs a statement that does not set id
-- nothing, not even its WHEN clause. It sees only statements that name id
-- in their SET list: a BEFORE trigger of the user's that assigns NEW.id is
-- not caught.
CREATE FUNCTION pgforce._refuse_id_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.current_setting('pgforce.origin', true) = 'salesforce' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'pgforce: changing the id of a row of %.% is refused (% to %): pgforce finds the row''s pending changes by id', TG_TABLE_SCHEMA, TG_TABLE_NAME, OLD.id, NEW.id
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Leave id as it is: it is this table''s own key and means nothing in Salesforce, where the record is known by sfid. To make a new record, INSERT a row.';
END
$$;

-- The columns capture records for a mapping: its mapped fields that have a
-- column, in table order. System columns are Salesforce's to set.
CREATE FUNCTION pgforce._captured_columns(p_mapping_id integer) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), '{}')
    FROM pgforce.mapping m
    JOIN pg_catalog.pg_attribute a ON a.attrelid = pgforce._mapping_table(m.id)
    WHERE m.id = p_mapping_id AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname::text IN (SELECT pg_catalog.lower(f) FROM pg_catalog.unnest(m.fields) f)
      AND a.attname::text <> ALL (ARRAY['id', 'sfid', 'systemmodstamp', 'isdeleted', 'createddate', '_hc_lastop', '_hc_err'])
$$;

-- (Re)creates the pgforce triggers of a mapping's table for its mode and
-- fields. Safe to call repeatedly; without the table it only drops the
-- capture functions.
--
-- search_path is pinned because the WHEN clauses of the triggers it creates
-- are resolved here, once, and then run in every writer's session: an
-- operator found through the caller's search_path (say one planted in a
-- schema ahead of pg_catalog) would be baked into them.
CREATE FUNCTION pgforce._install_triggers(p_mapping_id integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_mapping pgforce.mapping;
    v_table   regclass;
    v_columns text[];
    v_status  text;
BEGIN
    SELECT * INTO v_mapping FROM pgforce.mapping m WHERE m.id = p_mapping_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_table := pgforce._mapping_table(p_mapping_id);
    IF v_table IS NULL THEN
        PERFORM pgforce._drop_capture_functions(p_mapping_id);
        RETURN;
    END IF;
    PERFORM pgforce._drop_triggers(v_table);
    PERFORM pgforce._drop_capture_functions(p_mapping_id);
    PERFORM pgforce._disable_heroku_connect_triggers(v_table);
    v_columns := pgforce._captured_columns(p_mapping_id);

    EXECUTE pg_catalog.format(
        'CREATE TRIGGER pgforce_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT'
        ' EXECUTE FUNCTION pgforce._refuse_truncate(%L, %L)', v_table, p_mapping_id, v_mapping.mode);
    IF v_mapping.mode = 'read_write' THEN
        -- A read_write table leaves a fifth of each page free, unless its
        -- owner chose a fillfactor. Every update pgforce sends to
        -- Salesforce writes its row twice, the application's update and
        -- the write-back of _hc_lastop, and where the page has room the
        -- second is a HOT update, which writes no index entries. With full
        -- pages the write-back after a 100,000-row UPDATE moved every row
        -- to another page with three new index entries: 162 ms per batch
        -- of 5,000 against 128-141 ms (a third fewer WAL records). In six
        -- back-to-back pairs of Bulk 2.0 drains of 100,000 this was faster
        -- in five and even in one: 16,700-21,700 records/s against
        -- 18,500-25,700. The price is a table up to a quarter larger when
        -- freshly loaded, and a load perhaps 5% slower, which is why
        -- read_only tables, written once per Salesforce change, keep full
        -- pages. It applies to pages filled from then on; a table that
        -- had no fillfactor keeps it when its mapping goes back to
        -- read_only.
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_class c, pg_catalog.unnest(c.reloptions) o
                       WHERE c.oid = v_table AND o LIKE 'fillfactor=%') THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s SET (fillfactor = 80)', v_table);
        END IF;
        PERFORM pgforce._write_capture_functions(p_mapping_id, v_table, v_columns);
        v_status := pg_catalog.format('pgforce.%I()', '_status_' || p_mapping_id);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_capture_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgforce_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION pgforce.%I()', v_table, '_capture_' || p_mapping_id);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_capture_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgforce_old NEW TABLE AS pgforce_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION pgforce.%I()', v_table, '_capture_update_' || p_mapping_id);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_id BEFORE UPDATE OF id ON %s FOR EACH ROW WHEN (OLD.id OPERATOR(pg_catalog.<>) NEW.id)'
            ' EXECUTE FUNCTION pgforce._refuse_id_change()', v_table);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_capture_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS pgforce_old'
            ' FOR EACH STATEMENT EXECUTE FUNCTION pgforce.%I()', v_table, '_capture_' || p_mapping_id);
    ELSE
        v_status := 'pgforce._status()';
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_read_only BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT'
            ' EXECUTE FUNCTION pgforce._refuse_write(%L)', v_table, p_mapping_id);
    END IF;
    -- The status function runs for every INSERT and for an UPDATE that
    -- names a captured column in its SET list.
    --
    -- No WHEN clauses here: Postgres reads a trigger's WHEN clause back
    -- from its stored text and prepares it again for every statement
    -- (pgforce_id's only for those that set id), which cost a single-row
    -- UPDATE 16-24 µs (about 10 µs for a clause as short as
    -- NEW._hc_lastop IS DISTINCT FROM 'PENDING'), against 1-3 µs for
    -- calling a small function. Being column-specific instead spares the
    -- UPDATEs the function has nothing to do for, at no cost to any
    -- statement: a user's UPDATE of columns that are never sent leaves the
    -- status alone, and so, on a settled row, does every write of the
    -- worker's that does not set data (the write-back of _hc_lastop and
    -- sfid after a batch, deletions, ...). A BEFORE trigger of the user's
    -- that changes a captured column the statement does not name leaves
    -- the row's status as it was, though the change is captured. The price
    -- is that Postgres refuses to retype or drop a captured column while
    -- the trigger names it (ensure_table drops it to widen one). (The
    -- worker's direct loads switch the INSERT triggers off and stamp their
    -- rows SYNCED themselves.)
    EXECUTE pg_catalog.format(
        'CREATE TRIGGER pgforce_status BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s', v_table, v_status);
    IF pg_catalog.cardinality(v_columns) > 0 THEN
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pgforce_status_update BEFORE UPDATE OF %s ON %s FOR EACH ROW EXECUTE FUNCTION %s',
            (SELECT pg_catalog.string_agg(pg_catalog.format('%I', c), ', ') FROM pg_catalog.unnest(v_columns) c), v_table, v_status);
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

-- A table kept from Heroku Connect still has Connect's two triggers,
-- hc_<table>_logtrigger and hc_<table>_status_trigger. The log trigger
-- would go on queueing every write in _trigger_log for a Connect that no
-- longer runs (and fail every write once that table is dropped), and the
-- status trigger would stamp _hc_lastop as well, PENDING even for the
-- worker's writes. pgforce disables them when it takes the table over,
-- with a notice; they are kept, so that going back is ALTER TABLE ...
-- ENABLE TRIGGER.
CREATE FUNCTION pgforce._disable_heroku_connect_triggers(p_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_trigger name;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        WHERE t.tgrelid = p_table AND NOT t.tgisinternal AND t.tgenabled <> 'D'
          AND t.tgname::text IN ('hc_' || c.relname || '_logtrigger', 'hc_' || c.relname || '_status_trigger')
        ORDER BY t.tgname
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE TRIGGER %I', p_table, v_trigger);
        RAISE NOTICE 'pgforce: disabled Heroku Connect''s trigger % on %: pgforce syncs this table now', v_trigger, p_table
            USING HINT = pg_catalog.format('To give the table back to Heroku Connect, delete the mapping, then ALTER TABLE %s ENABLE TRIGGER %I;', p_table, v_trigger);
    END LOOP;
END
$$;

-- Keeps the table's triggers in step with the mapping: a mode change swaps
-- capture for refusal (or back), a change of fields regenerates the capture
-- function; a deleted mapping leaves a plain table and takes its unsent
-- changes with it.
CREATE FUNCTION pgforce._mapping_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_table   regclass;
    v_dropped bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_table := pg_catalog.to_regclass(pg_catalog.format('%I.%I',
            (SELECT o.schema_name FROM pgforce.org o WHERE o.name = OLD.org), OLD.table_name));
        IF v_table IS NOT NULL THEN
            PERFORM pgforce._drop_triggers(v_table);
        END IF;
        PERFORM pgforce._drop_capture_functions(OLD.id);
        DELETE FROM pgforce.outbox ob WHERE ob.mapping_id = OLD.id;
        -- Said, not only documented: a delete run to stop syncing for a
        -- while (pgforce.pause does that) lost queued changes unseen.
        GET DIAGNOSTICS v_dropped = ROW_COUNT;
        IF v_dropped > 0 THEN
            RAISE NOTICE 'pgforce: % change% of % not yet sent to Salesforce % dropped with its mapping',
                v_dropped, CASE WHEN v_dropped = 1 THEN '' ELSE 's' END, OLD.sobject, CASE WHEN v_dropped = 1 THEN 'was' ELSE 'were' END
                USING HINT = 'Their rows keep _hc_lastop = ''PENDING''. To stop syncing for a while and keep them, use pgforce.pause() instead.';
        END IF;
        RETURN OLD;
    END IF;
    IF (NEW.mode, NEW.fields) IS DISTINCT FROM (OLD.mode, OLD.fields) THEN
        PERFORM pgforce._install_triggers(NEW.id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER mapping_changed AFTER UPDATE OR DELETE ON pgforce.mapping
    FOR EACH ROW EXECUTE FUNCTION pgforce._mapping_changed();
