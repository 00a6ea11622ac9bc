-- 121_twoway: what keeps two-way sync correct when both sides edit a
-- record: echo suppression, field-level merge and the mapping's conflict
-- policy. The inbound apply path calls pgforce.inbound_filter for every
-- record it is about to write; users settle manual conflicts with
-- pgforce.resolve.
--
-- A field is "pending" for a record while an outbox entry of the record
-- (queued or in flight) carries a Postgres value for it that Salesforce has
-- not confirmed. Salesforce values for fields that are not pending always
-- apply: concurrent edits of different fields on each side both survive.

-- The lookup column a Heroku Connect relationship column
-- (<lookup>__r__<extid>) sets, as the outbound worker reads it
-- (relTargetOf): accountid for account__r__ext_id__c, period__c for
-- period__r__key__c or period__c__r__key__c; NULL when the mapping does
-- not map it.
CREATE FUNCTION pgforce._rel_lookup(p_mapping_id integer, p_column text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT c FROM pgforce.mapping m,
         LATERAL (SELECT pg_catalog.split_part(p_column, '__r__', 1) AS l) x,
         LATERAL pg_catalog.unnest(ARRAY[x.l || 'id', x.l || '__c', x.l]) WITH ORDINALITY AS u(c, i)
    WHERE m.id = p_mapping_id AND p_column LIKE '%\_\_r\_\_%'
      AND u.c IN (SELECT pg_catalog.lower(f) FROM pg_catalog.unnest(m.fields) f)
      AND (u.i < 3 OR x.l LIKE '%id' OR x.l LIKE '%\_\_c')
    ORDER BY u.i LIMIT 1
$$;

-- Whether Salesforce's lookup value p_sfid is the parent that a
-- relationship column (<lookup>__r__<extid>) of mapping p_mapping_id names
-- by p_ext: a row of a mapping of the same org has that Id and that
-- external id. Salesforce then holds what the column asked for (our write,
-- landed), which is no change of the parent made on its side. Ids are
-- unique across objects, so no other object's row can match.
CREATE FUNCTION pgforce._rel_names(p_mapping_id integer, p_column text, p_ext text, p_sfid text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ext   text := pg_catalog.split_part(p_column, '__r__', 2);
    v_table regclass;
    v_found boolean;
BEGIN
    IF p_ext IS NULL OR p_sfid IS NULL OR v_ext OPERATOR(pg_catalog.=) '' THEN
        RETURN false;
    END IF;
    FOR v_table IN
        SELECT pgforce._mapping_table(p.id) FROM pgforce.mapping m JOIN pgforce.mapping p ON p.org OPERATOR(pg_catalog.=) m.org
        WHERE m.id OPERATOR(pg_catalog.=) p_mapping_id
          AND v_ext OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.lower(f) FROM pg_catalog.unnest(p.fields) f)
    LOOP
        CONTINUE WHEN v_table IS NULL;
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %s t WHERE t.sfid::pg_catalog.text OPERATOR(pg_catalog.=) $1'
                                  ' AND t.%I::pg_catalog.text OPERATOR(pg_catalog.=) $2)', v_table, v_ext)
            INTO v_found USING p_sfid, p_ext;
        IF v_found THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- The pending fields of a record: column -> {"value", "at"} of the latest
-- queued change of each.
CREATE FUNCTION pgforce._pending_fields(p_mapping_id integer, p_record_id integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(k.key, pg_catalog.jsonb_build_object('value', k.value, 'at', k.created_at)), '{}')
    FROM (
        SELECT DISTINCT ON (kv.key) kv.key, kv.value, o.created_at
        FROM pgforce.outbox o
        CROSS JOIN LATERAL pg_catalog.jsonb_each(o.new) kv
        WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.op = 'update'
          AND NOT kv.key = ANY (ARRAY['sfid', 'systemmodstamp', 'isdeleted', 'createddate'])
        ORDER BY kv.key, o.id DESC
    ) k
$$;

-- Forgets queued Postgres changes of some fields of a record, because
-- Salesforce's value won; unclaimed entries left empty go away. Claimed
-- entries lose the fields too: a batch in flight sends the copy it holds,
-- but one that is handed back unsent (held while the worker catches up
-- after a start or resume, or a transient failure) is merged again from
-- the entries, and would otherwise send the value Salesforce's replaced.
-- A retry that goes away so settles its error: nothing is left to send,
-- and it waited for ever for a result that would never come.
-- A relationship column goes with the lookup column it sets: Salesforce's
-- value of the lookup replaces a queued change of the parent made either
-- way.
CREATE FUNCTION pgforce._drop_pending(p_mapping_id integer, p_record_id integer, p_columns text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pgforce._drop_pending_columns(p_mapping_id, p_record_id, p_columns || ARRAY(
        SELECT DISTINCT k FROM pgforce.outbox o, LATERAL pg_catalog.jsonb_object_keys(o.new) k
        WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.op = 'update'
          AND k LIKE '%\_\_r\_\_%' AND pgforce._rel_lookup(p_mapping_id, k) = ANY (p_columns)));
END
$$;

CREATE FUNCTION pgforce._drop_pending_columns(p_mapping_id integer, p_record_id integer, p_columns text[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE pgforce.outbox o SET new = o.new - p_columns, old = o.old - p_columns,
        dropped = CASE WHEN o.claimed_at IS NULL THEN o.dropped
                       ELSE ARRAY(SELECT pg_catalog.unnest(o.dropped) UNION
                                  SELECT k FROM pg_catalog.jsonb_object_keys(o.new) k WHERE k = ANY (p_columns)) END
    WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.op = 'update'
      AND o.new ?| p_columns;
    WITH gone AS (
        DELETE FROM pgforce.outbox o
        WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.op = 'update' AND o.claimed_at IS NULL
          AND o.new = '{}'::jsonb
        RETURNING o.retry_of
    )
    UPDATE pgforce.error e SET state = 'resolved'
    WHERE e.id IN (SELECT g.retry_of FROM gone g) AND e.state = 'retrying';
$$;

-- The fields (columns) of a row that changes Salesforce refused name, in
-- the payloads of its open, retrying or ignored outbound errors: they hold
-- what pgforce.retry sends once fixed, or what pgforce.ignore keeps, which
-- a version of the record older than the refusal must not replace (see
-- inbound_filter, and keepRefused in worker/inbound). p_version is when
-- Salesforce made the version being applied: an error last refused or
-- ignored before it gives way to it, a Salesforce edit made since. The
-- record as the row last took it (a poll's overlap, a reload) and our own
-- writes coming back (the create event of an insert whose later update
-- was refused) are older, and replaced the refused values, which the
-- retry then sent back: the change was lost. A row with none costs one
-- probe of error_record_idx.
CREATE FUNCTION pgforce._refused_fields(p_mapping_id integer, p_record_id integer, p_version timestamptz DEFAULT NULL) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT DISTINCT pg_catalog.lower(k)
        FROM pgforce.error e,
             pg_catalog.jsonb_object_keys(CASE WHEN pg_catalog.jsonb_typeof(e.payload) = 'object' THEN e.payload ELSE '{}' END) k
        WHERE e.mapping_id = p_mapping_id AND e.record_id = p_record_id AND e.direction = 'outbound'
          AND e.state IN ('open', 'retrying', 'ignored')
          AND (p_version IS NULL OR e.updated_at >= p_version))
$$;

-- Whether two values of one column of a mapped table are the same value.
-- Salesforce's come as the text Salesforce writes, the outbox's as the
-- jsonb of Postgres's typed value: 1.5 may be 1.50 on the other side, and a
-- datetime reads 2025-01-01T00:00:00.000+0000 against
-- 2025-01-01T00:00:00+00:00. Values whose text differs are compared as
-- values of the column's type, parsed as the inbound side casts them; a
-- text that is no value of that type differs. Empty text is null, as
-- everywhere in pgforce (Salesforce stores "" as null).
CREATE FUNCTION pgforce._same_value(p_table regclass, p_column text, p_a jsonb, p_b jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_a    text := NULLIF(p_a #>> '{}', '');
    v_b    text := NULLIF(p_b #>> '{}', '');
    v_type regtype;
    v_same boolean;
BEGIN
    IF v_a IS NULL OR v_b IS NULL THEN
        RETURN v_a IS NULL AND v_b IS NULL;
    END IF;
    IF v_a = v_b THEN
        RETURN true;
    END IF;
    -- Text types compare as text, done above: the parse below, run in a
    -- subtransaction, is only paid for the types whose text can differ.
    SELECT a.atttypid INTO v_type
    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
    WHERE a.attrelid = p_table AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped
      AND ty.typcategory <> 'S';
    IF v_type IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        -- Salesforce holds datetimes and times to the millisecond, and the
        -- worker sends them so: a Postgres value with microseconds is the
        -- same as the one Salesforce kept of it.
        IF v_type OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.timestamptz'::pg_catalog.regtype, 'pg_catalog.timestamp'::pg_catalog.regtype]) THEN
            EXECUTE pg_catalog.format('SELECT pg_catalog.date_trunc(''milliseconds'', $1::%1$s) OPERATOR(pg_catalog.=) pg_catalog.date_trunc(''milliseconds'', $2::%1$s)', v_type)
                INTO v_same USING v_a, v_b;
        ELSIF v_type OPERATOR(pg_catalog.=) 'pg_catalog.time'::pg_catalog.regtype THEN
            EXECUTE 'SELECT pg_catalog.date_trunc(''milliseconds'', $1::pg_catalog.time::pg_catalog.interval) OPERATOR(pg_catalog.=) pg_catalog.date_trunc(''milliseconds'', $2::pg_catalog.time::pg_catalog.interval)'
                INTO v_same USING v_a, v_b;
        ELSE
            EXECUTE pg_catalog.format('SELECT $1::%1$s OPERATOR(pg_catalog.=) $2::%1$s', v_type) INTO v_same USING v_a, v_b;
        END IF;
    EXCEPTION WHEN data_exception OR undefined_function THEN
        v_same := false;
    END;
    RETURN coalesce(v_same, false);
END
$$;

-- Decides which Salesforce values of one record the inbound side may write.
--
--   p_values   column (lower-case, as in the table) -> value from Salesforce
--   p_sf_at    when Salesforce committed the change (CDC commitTimestamp, or
--              SystemModstamp when polling)
--   p_echo     true when the change is our own write coming back (the CDC
--              changeOrigin carries client=pgforce)
--   p_whole    true when p_values is the whole record as Salesforce holds
--              it (a poll, resync, re-read or reload), false when it holds
--              only the fields a change event says changed
--
-- Returns the subset of p_values to apply. A record older than the row
-- (its SystemModstamp later than p_sf_at) is not written, so nothing of it
-- applies and it neither drops queued changes nor records a conflict.
-- Fields without a pending Postgres change always pass. For a pending
-- field:
--   * an echo never overwrites it (Postgres holds a newer value);
--   * the same value on both sides is no conflict: it applies and the
--     queued change of that field is dropped;
--   * in a whole record, a value that the field had before one of the
--     record's queued changes (an outbox entry's old value) was not changed
--     in Salesforce, which still holds it or what pgforce wrote: Postgres's
--     value stays and is sent. A whole record carries every field, so
--     without this every queued change would look like one made on both
--     sides, and a poll after an edit of another field in Salesforce would
--     undo it;
--   * otherwise the mapping's conflict policy decides: salesforce_wins
--     applies it and drops the queued Postgres change; postgres_wins keeps
--     Postgres's value, which is then sent; newest_wins compares p_sf_at
--     with the time the Postgres change was captured; manual keeps
--     Postgres's value in the row, holds the record's outbox entries and
--     records a CONFLICT error (payload {"postgres": {...}, "salesforce":
--     {...}}) for pgforce.resolve.
-- Call it inside the transaction that applies the record, before writing.
CREATE FUNCTION pgforce.inbound_filter(p_mapping_id integer, p_record_id integer, p_values jsonb,
                                       p_sf_at timestamptz DEFAULT NULL, p_echo boolean DEFAULT false,
                                       p_whole boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_pending  jsonb;
    v_policy   text;
    v_out      jsonb := '{}';
    v_drop     text[] := '{}';
    v_pg       jsonb := '{}';
    v_sf       jsonb := '{}';
    v_key      text;
    v_value    jsonb;
    v_pend     jsonb;
    v_sfid     text;
    v_table    regclass;
    v_stamp    timestamptz;
    v_won      jsonb := '{}';
    v_kept     jsonb := '{}';
    v_flight   text[];
    v_again    jsonb;
    v_agreed   text[] := '{}';
    v_relof    jsonb := '{}';
    v_lookup   text;
    v_cur      jsonb;
    v_pgkey    text;
BEGIN
    IF p_values IS NULL OR p_record_id IS NULL THEN
        RETURN p_values;
    END IF;
    -- Serialise with the outbound worker's write-back of this record's
    -- changes. Locks are taken in the order the worker takes them (the
    -- row, then its outbox entries by id), never the other way round: the
    -- worker recording a result while the echo of the same write is
    -- applied here would otherwise deadlock (the row locked on one side,
    -- the entries on the other).
    v_table := pgforce._mapping_table(p_mapping_id);
    IF v_table IS NOT NULL THEN
        EXECUTE pg_catalog.format('SELECT t.systemmodstamp FROM %s t WHERE t.id = $1 FOR UPDATE', v_table)
            INTO v_stamp USING p_record_id;
        -- The caller's UPDATE skips a record older than the row (a stale
        -- re-read, a replayed event): decided here, under the row lock and
        -- by the same test, so that it has no effect on the queued changes
        -- either.
        IF v_stamp > p_sf_at THEN
            RETURN '{}';
        END IF;
    END IF;
    PERFORM FROM pgforce.outbox o WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id ORDER BY o.id FOR UPDATE;
    IF FOUND THEN
        -- A claim running meanwhile skips the entries locked here, and a
        -- streaming worker hears of nothing new when they are released:
        -- the wake-up, delivered when this transaction ends, makes it look
        -- again.
        PERFORM pg_catalog.pg_notify('pgforce_outbox', '');
    END IF;
    v_pending := pgforce._pending_fields(p_mapping_id, p_record_id);
    -- A version of the record older than a refused change replaces none
    -- of its fields that nothing queued carries, as the set-based merge
    -- does not for a FAILED row (keepRefused in worker/inbound): they hold
    -- what pgforce.retry sends, or what pgforce.ignore keeps, also once a
    -- change of another field has made the row PENDING. (A field queued
    -- again, by a retry say, is the policy's to settle below.)
    p_values := p_values OPERATOR(pg_catalog.-) ARRAY(
        SELECT f FROM pg_catalog.unnest(pgforce._refused_fields(p_mapping_id, p_record_id, coalesce(p_sf_at, '-infinity'))) f
        WHERE NOT v_pending ? f);
    IF v_pending = '{}' THEN
        RETURN p_values;
    END IF;
    -- A queued change of a relationship column (account__r__ext_id__c) is
    -- a change of the lookup it sets (accountid): where Salesforce changed
    -- that lookup too (its value is not the one the row holds), the two
    -- changes of the parent meet under the policy, as two changes of the
    -- lookup would. Left apart, the relationship column's change was sent
    -- over Salesforce's whatever the policy said. Not in the echo of our
    -- own write: the lookup it carries is the parent the relationship
    -- column named, which the row takes.
    FOR v_key IN SELECT k FROM pg_catalog.jsonb_object_keys(v_pending) k WHERE k LIKE '%\_\_r\_\_%' AND NOT p_echo LOOP
        CONTINUE WHEN pg_catalog.jsonb_typeof(v_pending -> v_key -> 'value') = 'null';
        v_lookup := pgforce._rel_lookup(p_mapping_id, v_key);
        CONTINUE WHEN v_lookup IS NULL OR NOT p_values ? v_lookup OR v_pending ? v_lookup OR v_table IS NULL;
        EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->) $2 FROM %s t WHERE t.id OPERATOR(pg_catalog.=) $1', v_table)
            INTO v_cur USING p_record_id, v_lookup;
        CONTINUE WHEN pgforce._same_value(v_table, v_lookup, coalesce(v_cur, 'null'), p_values -> v_lookup);
        -- Salesforce's lookup names the parent the column names: our
        -- change, landed (the echo of a poll or a re-read, which cannot
        -- tell), not a change of Salesforce's.
        CONTINUE WHEN pgforce._rel_names(p_mapping_id, v_key, v_pending -> v_key ->> 'value', p_values ->> v_lookup);
        v_pending := v_pending || pg_catalog.jsonb_build_object(v_lookup, v_pending -> v_key);
        v_relof := v_relof || pg_catalog.jsonb_build_object(v_lookup, v_key);
    END LOOP;
    SELECT m.conflict INTO v_policy FROM pgforce.mapping m WHERE m.id = p_mapping_id;
    FOR v_key, v_value IN SELECT * FROM pg_catalog.jsonb_each(p_values) LOOP
        v_pend := v_pending -> v_key;
        -- Postgres's side of a lookup set through its relationship column
        -- is that column (the worker resolves it), never the lookup.
        v_pgkey := coalesce(v_relof ->> v_key, v_key);
        IF v_pend IS NULL THEN
            v_out := v_out || pg_catalog.jsonb_build_object(v_key, v_value);
        ELSIF p_echo THEN
            CONTINUE;
        ELSIF NOT v_relof ? v_key AND pgforce._same_value(v_table, v_key, v_pend -> 'value', v_value) THEN
            v_out := v_out || pg_catalog.jsonb_build_object(v_key, v_value);
            v_drop := v_drop || v_key;
            v_agreed := v_agreed || v_key;
        ELSIF p_whole AND p_sf_at <= v_stamp THEN
            -- The record as the row last took it from Salesforce (a poll's
            -- overlap, a re-read): Salesforce changed nothing since, so
            -- ours stays and is sent. A retry of a refused write, which
            -- carries no old values, is kept so.
            CONTINUE;
        ELSIF p_whole AND EXISTS (
                SELECT FROM pgforce.outbox o
                WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.op = 'update' AND o.old ? v_key
                  AND pgforce._same_value(v_table, v_key, o.old -> v_key, v_value)) THEN
            -- Not changed in Salesforce: keep ours. Every entry counts,
            -- claimed ones too: the first one's old value is what
            -- Salesforce had before the Postgres edits, a later one's what
            -- an earlier entry sent. Retries of a failed write carry no old
            -- values, and their fields are left to the policy when
            -- Salesforce changed the record since.
            CONTINUE;
        ELSIF v_policy = 'salesforce_wins'
           OR (v_policy = 'newest_wins' AND p_sf_at IS NOT NULL AND p_sf_at > (v_pend ->> 'at')::timestamptz) THEN
            v_out := v_out || pg_catalog.jsonb_build_object(v_key, v_value);
            v_drop := v_drop || v_key;
            v_won := v_won || pg_catalog.jsonb_build_object(v_key, v_value);
        ELSIF v_policy = 'manual' THEN
            v_pg := v_pg || pg_catalog.jsonb_build_object(v_pgkey, v_pend -> 'value');
            v_sf := v_sf || pg_catalog.jsonb_build_object(v_key, v_value);
        ELSE
            -- postgres_wins, or newest_wins with Postgres newer: keep ours.
            v_kept := v_kept || pg_catalog.jsonb_build_object(v_pgkey, v_pend -> 'value');
        END IF;
    END LOOP;
    -- A change in flight (claimed) reaches Salesforce as the worker holds
    -- it, whatever was decided here, and is then done with: the policy's
    -- choice is sent after it. Salesforce's value, when it won: else the
    -- write in flight replaced it there, and its echo then replaced it in
    -- the row too. Ours, when it was kept and nothing queued carries it:
    -- else Salesforce's edit, landed after the write in flight, stayed
    -- there while the row kept ours, and the two sides differed for good.
    IF v_won <> '{}' OR v_kept <> '{}' THEN
        -- Fields dropped from a claimed entry earlier (a Salesforce edit
        -- that won before this one) are still in flight too.
        v_flight := ARRAY(
            SELECT DISTINCT k.key FROM pgforce.outbox o,
                   LATERAL (SELECT pg_catalog.jsonb_object_keys(o.new) UNION SELECT pg_catalog.unnest(o.dropped)) k(key)
            WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.op = 'update' AND o.claimed_at IS NOT NULL
              AND NOT EXISTS (SELECT FROM pgforce.outbox q
                              WHERE q.mapping_id = p_mapping_id AND q.record_id = p_record_id AND q.op = 'update'
                                AND q.claimed_at IS NULL AND q.new ? k.key AND NOT k.key = ANY (v_drop)));
        -- A lookup set through a relationship column in flight is in
        -- flight too: the write lands as that lookup's change.
        v_flight := v_flight || ARRAY(SELECT r.key FROM pg_catalog.jsonb_each_text(v_relof) r WHERE r.value OPERATOR(pg_catalog.=) ANY (v_flight));
        v_won := v_won OPERATOR(pg_catalog.-) ARRAY(SELECT pg_catalog.jsonb_object_keys(v_won) EXCEPT SELECT pg_catalog.unnest(v_flight));
        v_kept := v_kept OPERATOR(pg_catalog.-) ARRAY(SELECT pg_catalog.jsonb_object_keys(v_kept) EXCEPT SELECT pg_catalog.unnest(v_flight));
        IF v_won <> '{}' THEN
            -- As Postgres holds the values (the row's types), for the worker
            -- to send as any change. Empty text is null, as everywhere.
            EXECUTE pg_catalog.format('SELECT pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(NULL::%s, $1))', v_table)
                INTO v_again
                USING (SELECT pg_catalog.jsonb_object_agg(w.key, CASE WHEN w.value #>> '{}' OPERATOR(pg_catalog.=) '' THEN 'null'::jsonb ELSE w.value END)
                       FROM pg_catalog.jsonb_each(v_won) w);
            v_kept := v_kept || (SELECT pg_catalog.jsonb_object_agg(w.key, v_again -> w.key) FROM pg_catalog.jsonb_each(v_won) w);
        END IF;
        IF v_kept <> '{}' THEN
            SELECT o.sfid INTO v_sfid FROM pgforce.outbox o
            WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.sfid IS NOT NULL
            ORDER BY o.id DESC LIMIT 1;
        END IF;
    END IF;
    -- A field both sides agree on drops only its own queued changes: a
    -- later move of the parent through a relationship column, queued
    -- after the lookup change Salesforce agrees with, is still to be sent.
    IF pg_catalog.cardinality(v_agreed) > 0 THEN
        PERFORM pgforce._drop_pending_columns(p_mapping_id, p_record_id, v_agreed);
    END IF;
    v_drop := ARRAY(SELECT pg_catalog.unnest(v_drop) EXCEPT SELECT pg_catalog.unnest(v_agreed));
    IF pg_catalog.cardinality(v_drop) > 0 THEN
        PERFORM pgforce._drop_pending(p_mapping_id, p_record_id, v_drop);
    END IF;
    -- Fields both sides now hold the same value of are in dispute no more:
    -- an open conflict that kept them held the record's changes for
    -- nothing, and resolving it for Salesforce wrote its superseded value
    -- back over the one both agreed on. A conflict left with no field is
    -- settled.
    IF pg_catalog.cardinality(v_agreed) > 0 THEN
        UPDATE pgforce.error e
        SET payload = pg_catalog.jsonb_build_object('postgres', (e.payload -> 'postgres') OPERATOR(pg_catalog.-) v_agreed,
                                                    'salesforce', (e.payload -> 'salesforce') OPERATOR(pg_catalog.-) v_agreed),
            fields = ARRAY(SELECT f FROM pg_catalog.unnest(e.fields) f WHERE NOT f = ANY (v_agreed) ORDER BY f),
            state = CASE WHEN (e.payload -> 'salesforce') OPERATOR(pg_catalog.-) v_agreed = '{}'::jsonb THEN 'resolved' ELSE e.state END
        WHERE e.mapping_id = p_mapping_id AND e.record_id = p_record_id AND e.state = 'open' AND e.error_code = 'CONFLICT'
          AND (e.payload -> 'salesforce') ?| v_agreed;
    END IF;
    -- After the drop, which would take Salesforce's values out of it too.
    IF v_kept <> '{}' AND v_sfid IS NOT NULL THEN
        INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new)
        VALUES (p_mapping_id, 'update', p_record_id, v_sfid, v_kept);
        v_sfid := NULL;
    END IF;
    IF v_sf <> '{}' THEN
        SELECT o.sfid INTO v_sfid FROM pgforce.outbox o
        WHERE o.mapping_id = p_mapping_id AND o.record_id = p_record_id AND o.sfid IS NOT NULL LIMIT 1;
        -- One open conflict per record gathers every field in dispute.
        UPDATE pgforce.error e
        SET payload = pg_catalog.jsonb_build_object('postgres', (e.payload -> 'postgres') || v_pg, 'salesforce', (e.payload -> 'salesforce') || v_sf),
            fields = ARRAY(SELECT DISTINCT f FROM pg_catalog.unnest(e.fields || ARRAY(SELECT pg_catalog.jsonb_object_keys(v_sf))) f ORDER BY f),
            attempts = e.attempts + 1
        WHERE e.mapping_id = p_mapping_id AND e.record_id = p_record_id AND e.state = 'open' AND e.error_code = 'CONFLICT';
        IF NOT FOUND THEN
            INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message, fields)
            VALUES (p_mapping_id, 'inbound', 'cdc', p_record_id, v_sfid,
                    pg_catalog.jsonb_build_object('postgres', v_pg, 'salesforce', v_sf), 'CONFLICT',
                    'fields changed in both Postgres and Salesforce: ' || (SELECT pg_catalog.string_agg(k, ', ' ORDER BY k) FROM pg_catalog.jsonb_object_keys(v_sf) k)
                        || '; settle with pgforce.resolve(id, ''postgres'') or pgforce.resolve(id, ''salesforce'')',
                    ARRAY(SELECT k FROM pg_catalog.jsonb_object_keys(v_sf) k ORDER BY k));
        END IF;
    END IF;
    RETURN v_out;
END
$$;

COMMENT ON FUNCTION pgforce.inbound_filter(integer, integer, jsonb, timestamptz, boolean, boolean) IS 'Inbound worker: the Salesforce values of a record that may be written, after echo suppression, field-level merge and the conflict policy.';

-- Settles a manual conflict. 'postgres' keeps the row as it is and sends
-- its values of the disputed fields to Salesforce; 'salesforce' writes Salesforce's values
-- into the row (as the worker, so it is not captured), drops the queued
-- Postgres change of those fields and queues Salesforce's values to be
-- written back there (see below).
CREATE FUNCTION pgforce.resolve(p_error_id bigint, p_winner text) RETURNS pgforce.error
LANGUAGE plpgsql AS $$
DECLARE
    v_error  pgforce.error;
    v_table  regclass;
    v_cols   text;
    v_keys   text[];
    v_origin text := pgforce.origin();
    v_sfid   text;
    v_new    jsonb;
    v_xmlbinary text := pg_catalog.current_setting('xmlbinary');
    v_timezone  text := pg_catalog.current_setting('TimeZone');
    v_unsafe    text[];
BEGIN
    v_error := pgforce._error_for_update(p_error_id);
    IF v_error.error_code IS DISTINCT FROM 'CONFLICT' THEN
        RAISE EXCEPTION 'pgforce: error % is not a conflict', p_error_id
            USING ERRCODE = 'check_violation',
                  HINT = pg_catalog.format('Use SELECT pgforce.retry(%s), pgforce.ignore(%s) or pgforce.revert(%s) for other errors.', p_error_id, p_error_id, p_error_id);
    END IF;
    IF v_error.state <> 'open' THEN
        RAISE EXCEPTION 'pgforce: conflict % is % already', p_error_id, v_error.state
            USING ERRCODE = 'check_violation', HINT = 'Only open conflicts can be resolved.';
    END IF;
    IF p_winner IS NULL OR p_winner NOT IN ('postgres', 'salesforce') THEN
        RAISE EXCEPTION 'pgforce: unknown winner % for conflict %', pg_catalog.quote_nullable(p_winner), p_error_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass ''postgres'' to keep the Postgres values or ''salesforce'' to take Salesforce''s.';
    END IF;
    IF p_winner = 'salesforce' THEN
        v_table := pgforce._mapping_table(v_error.mapping_id);
        v_keys := ARRAY(SELECT pg_catalog.jsonb_object_keys(v_error.payload -> 'salesforce'));
        IF v_table IS NOT NULL AND pg_catalog.cardinality(v_keys) > 0 THEN
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k), ', ') INTO v_cols FROM pg_catalog.unnest(v_keys) k;
            -- The queued changes of these fields go first, so that a row
            -- left with nothing queued is stamped SYNCED by this write (the
            -- status trigger leaves a PENDING row PENDING on its own).
            PERFORM pgforce._drop_pending(v_error.mapping_id, v_error.record_id, v_keys);
            PERFORM pgforce._as_worker();
            -- The application's triggers on the table run in this UPDATE,
            -- as this function's owner, the role the worker runs as. They
            -- get Postgres's default search_path, as in the worker's own
            -- sessions, rather than the one pinned here (they name their
            -- own tables unqualified) or the caller's, which the caller
            -- sets: a schema of its own ahead in it would have run its code
            -- as the owner. pg_temp is named last for the same reason: left
            -- out, Postgres looks there first for tables, and a temporary
            -- table of the caller's named like one a trigger writes ran the
            -- caller's own triggers as the owner. The statement itself
            -- names everything in full.
            PERFORM pg_catalog.set_config('search_path', '"$user", public, pg_temp', true);
            -- Those triggers, and the status trigger, then run as the owner
            -- whatever another role planted in these schemas (see
            -- _unsafe_search_path).
            v_unsafe := pgforce._unsafe_search_path();
            IF pg_catalog.cardinality(v_unsafe) > 0 THEN
                RAISE EXCEPTION 'pgforce: resolving with Salesforce''s values writes the row as %, and the search_path it needs is not safe: %', CURRENT_USER, pg_catalog.array_to_string(v_unsafe, ', ')
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Operators and functions of other roles there would run as pgforce''s owner. Take CREATE on those schemas from the roles named (for public, as Postgres 15 does: REVOKE CREATE ON SCHEMA public FROM PUBLIC;) and drop what they planted, or resolve with ''postgres''.';
            END IF;
            EXECUTE pg_catalog.format('UPDATE %s t SET (%s) = (SELECT %s FROM pg_catalog.jsonb_populate_record(NULL::%s, $1)),'
                                      ' _hc_lastop = ''PENDING'' WHERE t.id OPERATOR(pg_catalog.=) $2'
                                      ' RETURNING t.sfid, (SELECT pg_catalog.jsonb_object_agg(k, pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->) k)'
                                      ' FROM pg_catalog.unnest($3::pg_catalog.text[]) k)',
                                      v_table, v_cols, v_cols, v_table)
                INTO v_sfid, v_new
                USING v_error.payload -> 'salesforce', v_error.record_id, v_keys;
            -- Salesforce's values go back to Salesforce too: a Postgres
            -- write of these fields that was on its way when the conflict
            -- was recorded has replaced them there since, and the record
            -- would have kept it while the row showed Salesforce's. (Where
            -- none was, this writes again what Salesforce holds.)
            IF v_sfid IS NOT NULL THEN
                INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new)
                VALUES (v_error.mapping_id, 'update', v_error.record_id, v_sfid, v_new);
            END IF;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),
                    pg_catalog.set_config('pgforce.origin', v_origin, true), pg_catalog.set_config('xmlbinary', v_xmlbinary, true),
                    pg_catalog.set_config('TimeZone', v_timezone, true);
        ELSE
            PERFORM pgforce._drop_pending(v_error.mapping_id, v_error.record_id, v_keys);
        END IF;
    ELSE
        -- The row's values of the disputed fields go to Salesforce. The
        -- change that carried them may have been in flight as the
        -- conflict was recorded, and done with since, while Salesforce's
        -- edit, landed after it, stayed there. (Where the change is still
        -- queued, this writes the same values again.)
        v_table := pgforce._mapping_table(v_error.mapping_id);
        v_keys := ARRAY(SELECT pg_catalog.jsonb_object_keys(v_error.payload -> 'postgres'));
        IF v_table IS NOT NULL AND pg_catalog.cardinality(v_keys) > 0 THEN
            EXECUTE pg_catalog.format('SELECT t.sfid, (SELECT pg_catalog.jsonb_object_agg(k, pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->) k)'
                                      ' FROM pg_catalog.unnest($2::pg_catalog.text[]) k) FROM %s t WHERE t.id OPERATOR(pg_catalog.=) $1', v_table)
                INTO v_sfid, v_new
                USING v_error.record_id, v_keys;
            IF v_sfid IS NOT NULL THEN
                INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new)
                VALUES (v_error.mapping_id, 'update', v_error.record_id, v_sfid, v_new);
            END IF;
        END IF;
    END IF;
    UPDATE pgforce.error e SET state = 'resolved' WHERE e.id = p_error_id RETURNING * INTO v_error;
    PERFORM pg_catalog.pg_notify('pgforce_outbox', '');
    RETURN v_error;
END
$$;

COMMENT ON FUNCTION pgforce.resolve(bigint, text) IS 'Settle a manual conflict: ''postgres'' sends the Postgres values, ''salesforce'' takes Salesforce''s into the row.';

-- pgforce.inbound_filter for a record known by its Salesforce Id; returns
-- p_values unchanged when no row of the mapping has that sfid yet.
CREATE FUNCTION pgforce.inbound_filter_by_sfid(p_mapping_id integer, p_sfid text, p_values jsonb,
                                               p_sf_at timestamptz DEFAULT NULL, p_echo boolean DEFAULT false,
                                               p_whole boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_table regclass := pgforce._mapping_table(p_mapping_id);
    v_id    integer;
BEGIN
    IF v_table IS NULL THEN
        RETURN p_values;
    END IF;
    EXECUTE pg_catalog.format('SELECT t.id FROM %s t WHERE t.sfid = $1', v_table) INTO v_id USING p_sfid;
    IF v_id IS NULL THEN
        RETURN p_values;
    END IF;
    RETURN pgforce.inbound_filter(p_mapping_id, v_id, p_values, p_sf_at, p_echo, p_whole);
END
$$;

COMMENT ON FUNCTION pgforce.inbound_filter_by_sfid(integer, text, jsonb, timestamptz, boolean, boolean) IS 'Inbound worker: pgforce.inbound_filter for the row with this sfid.';

-- A read of whole records from Salesforce (a load, a poll, a re-read, a
-- resync) may reach a record before pgforce writes or deletes it, and be
-- applied after. Its copy is then older than Postgres's, and the row's
-- SystemModstamp cannot tell: it is Salesforce's, and moves only when a
-- read brings the write's echo. Taken for Salesforce's, that copy would
-- put the value the write replaced back in the row, bring a deleted
-- record back as a row, and, where a change queued after the write has
-- the write's value as its old value, look like a Salesforce edit of the
-- field: salesforce_wins would drop the change, and the next read bring
-- the write's value back, so that the change was lost on both sides.
--
-- So the inbound worker registers each read here before its first
-- request, and while a read of the mapping is registered the outbound
-- worker notes, in the transaction that records a write's outcome, which
-- records it wrote or deleted (pgforce.outbound_written). That
-- transaction starts after Salesforce answered the write, and the read's
-- first request goes after its registration committed: a read that
-- reached a record before pgforce's write of it was registered before the
-- write's outcome was recorded, so the write is noted, with a time later
-- than the read's start. A read leaves out the records noted at or after
-- its start and queues them in pgforce.inbound_reread, to be read again
-- as they are now. (The outcome's transaction and the read's apply both
-- lock the row, so the apply sees an outcome recorded first; a deleted
-- record has no row, and the statement that would make one looks again.)
-- Notes older than every read in flight can mislead none, and go when a
-- read ends.
CREATE TABLE pgforce.inbound_read (
    id         bigserial   PRIMARY KEY,
    mapping_id integer     NOT NULL REFERENCES pgforce.mapping (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE pgforce.inbound_read IS 'Reads of whole records from Salesforce in flight, registered by the inbound worker before it asks.';

CREATE TABLE pgforce.outbound_written (
    mapping_id integer     NOT NULL REFERENCES pgforce.mapping (id) ON DELETE CASCADE,
    sfid       text        NOT NULL,
    written_at timestamptz NOT NULL,
    PRIMARY KEY (mapping_id, sfid)
);

COMMENT ON TABLE pgforce.outbound_written IS 'Records the outbound worker wrote or deleted in Salesforce while a read of their mapping was in flight (see pgforce.inbound_read).';

-- Registers a read of mapping p_mapping_id's records, before the worker
-- asks Salesforce; pgforce._inbound_read_end ends it. The mapping's
-- runner reads one thing at a time (a load, then polls, re-reads and
-- resyncs one after another), so a read registered before is over: one
-- whose end failed (its connection was cut), or whose registration's
-- answer was lost, ends here. Left registered, it had every write of the
-- mapping noted, and no read's end purged those notes.
CREATE FUNCTION pgforce._inbound_read_begin(p_mapping_id integer, OUT read_id bigint, OUT started_at timestamptz)
LANGUAGE sql AS $$
    DELETE FROM pgforce.inbound_read r WHERE r.mapping_id = p_mapping_id;
    INSERT INTO pgforce.inbound_read (mapping_id) VALUES (p_mapping_id) RETURNING id, started_at;
$$;

-- Ends read p_read_id, and forgets the writes noted before every read of
-- its mapping still in flight: a read that starts later reaches them as
-- they are.
CREATE FUNCTION pgforce._inbound_read_end(p_read_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_mapping integer;
BEGIN
    DELETE FROM pgforce.inbound_read r WHERE r.id = p_read_id RETURNING r.mapping_id INTO v_mapping;
    IF v_mapping IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM pgforce.outbound_written w
    WHERE w.mapping_id = v_mapping
      AND w.written_at < coalesce((SELECT min(r.started_at) FROM pgforce.inbound_read r WHERE r.mapping_id = v_mapping), 'infinity');
END
$$;

-- Ends every read of mapping p_mapping_id: a worker starting on it runs
-- none yet, and the reads a stopped one left registered would have every
-- write noted for ever.
CREATE FUNCTION pgforce._inbound_reads_reset(p_mapping_id integer) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM pgforce.inbound_read r WHERE r.mapping_id = p_mapping_id;
    DELETE FROM pgforce.outbound_written w WHERE w.mapping_id = p_mapping_id;
$$;
