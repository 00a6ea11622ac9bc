-- 050_outbox: Postgres changes waiting to be written to Salesforce.
--
-- Capture triggers append here in the user's transaction; the worker claims
-- entries in batches, writes them to Salesforce and deletes them. The table
-- is kept small and hot: it has no foreign keys, because an RI check per
-- captured row would sit on the application's write path (mapping deletion
-- cleans up instead, see 060_capture).

CREATE TABLE pgforce.outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mapping_id integer     NOT NULL,
    op         text        NOT NULL,
    record_id  integer     NOT NULL,
    sfid       character varying(18),
    new        jsonb,
    old        jsonb,
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- When the statement that made the change began (not its
    -- transaction): newest_wins compares it with Salesforce's time, and a
    -- change made after a Salesforce edit in a transaction begun before it
    -- lost to the older edit.
    created_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    claimed_at timestamptz,
    claimed_by text,
    attempts   integer     NOT NULL DEFAULT 0,
    sent_from  timestamptz,
    retry_of   bigint,
    -- Fields taken out of the entry while it was claimed, because
    -- Salesforce's value won (see pgforce._drop_pending): the worker sends
    -- the copy it holds all the same, so they are still in flight. Cleared
    -- when an entry that no claim may have sent is handed back unsent.
    dropped    text[]
) WITH (fillfactor = 50);

-- A claim sets claimed_at on every entry it hands out. Half of each page
-- is left free and no index covers claimed_at (not even in a partial
-- index's predicate) so that this is a HOT update: the new version goes on
-- the same page and no index entry is written. That halved the cost of
-- claiming 5,000 entries of a 100,000 backlog (130 ms to 57 ms), the step
-- a drain runs one at a time. The price is a table twice as large on disk
-- while entries wait; the worker deletes them once written.

-- No CHECK constraints here, unlike every other pgforce table: Postgres
-- parses and plans a table's CHECK expressions again in every statement
-- that inserts into it, which measured about a tenth of the capture cost of
-- a single-row UPDATE. Only pgforce's own functions write this table (users
-- have no grant on it); the rules they keep are:
--   op is 'insert', 'update' or 'delete';
--   insert: new holds every mapped column; update: new holds the changed
--   columns and old their previous values; delete: old holds the row and
--   new is NULL;
--   claimed_at and claimed_by are both set or both NULL.
COMMENT ON COLUMN pgforce.outbox.op IS 'insert, update or delete.';
COMMENT ON COLUMN pgforce.outbox.new IS 'insert: every mapped column; update: the changed columns; delete: NULL.';
COMMENT ON COLUMN pgforce.outbox.old IS 'update: previous values of the changed columns; delete: the row; insert: NULL.';

-- Capture writes three index entries per row. The primary key serves the
-- worker, which finds the entries of a batch by id. (Making (mapping_id,
-- id) the primary key instead saves an index write per captured row, but
-- then a batch's id = ANY(...) is no longer sure to be an index condition:
-- with a plan made while the outbox was nearly empty, Postgres filtered the
-- whole backlog through the batch's ids, one by one, and a result
-- transaction took a second.)
--
-- This one serves every scan of one mapping in id order: the claims, and
-- whether a backlog is large enough for Bulk. Both it and the primary key
-- are appended at their right edge (ids only grow).
CREATE INDEX outbox_mapping_id_idx ON pgforce.outbox (mapping_id, id);

-- This one finds the entries of one record, which capture (a delete
-- cancels the pending insert of its row), the inbound side (is a field of
-- this record waiting to go to Salesforce? is the row settled?) and the
-- worker's write-back (is a newer change of this row queued?) ask for one
-- record or one batch at a time. Without it each such question read the
-- mapping's whole backlog: with 100,000 changes queued, one call of
-- pgforce.inbound_filter took 55 ms, against 0.8 ms with the index, so the
-- Change Data Capture echoes of a drained backlog would have taken over an
-- hour to apply, and every Salesforce edit waited as long behind them.
-- Measured with `make bench` (capture overhead, quick mode, back to back),
-- the index costs 100-row UPDATEs 0.313 of the unmapped TPS against 0.334
-- without it, and single-row UPDATEs nothing measurable (0.739 against
-- 0.735). It replaces a partial index on the same columns that held only
-- the entries of rows without an sfid.
CREATE INDEX outbox_record_idx ON pgforce.outbox (mapping_id, record_id);

-- Those questions are answered by a probe of that index per record, and
-- Postgres chooses the probe from the outbox's statistics: a sample of
-- whatever it held when last analyzed. After a trickle of changes to a few
-- hot rows the sample says record_id has three values, every probe looks
-- like a third of the table, and a plan that reads the backlog wins: the
-- write-back's check for newer changes of 2,000 rows then took 15 s with
-- 50,000 queued (5 ms through the index). A backlog holds one or a few
-- changes per record, so the count of distinct records is pinned at half
-- the entries, whatever the sample saw.
ALTER TABLE pgforce.outbox ALTER COLUMN record_id SET (n_distinct = -0.5);

COMMENT ON TABLE pgforce.outbox IS 'Captured Postgres changes not yet written to Salesforce, oldest first. The worker deletes entries once written.';
COMMENT ON COLUMN pgforce.outbox.record_id IS 'id of the row in the mapped table.';
COMMENT ON COLUMN pgforce.outbox.xid IS 'Transaction that made the change, so the worker can keep a transaction''s changes together.';
COMMENT ON COLUMN pgforce.outbox.attempts IS 'Claims that may have sent the entry to Salesforce (one handed back unsent does not count): an insert claimed before is looked for in Salesforce before it is sent again.';
COMMENT ON COLUMN pgforce.outbox.sent_from IS 'When the first claim that may have sent the entry began: a record the entry created is no older.';
COMMENT ON COLUMN pgforce.outbox.retry_of IS 'The pgforce.error this entry retries, resolved when it succeeds.';

-- Claims up to p_limit unclaimed entries of one mapping, oldest first, for
-- worker p_worker, and marks them claimed in the same statement so that no
-- lock is held while the worker talks to Salesforce. Claims of one mapping
-- take turns (a transaction-scoped advisory lock, released at once since
-- the claim is its own statement) so that per-record order holds across
-- workers: an entry is skipped while an earlier entry of its record is in
-- flight with any worker, and waits for a later claim. SKIP LOCKED steps
-- over entries the worker is deleting.
CREATE FUNCTION pgforce.claim(p_mapping_id integer, p_limit integer, p_worker text)
RETURNS SETOF pgforce.outbox
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgforce.claim'), p_mapping_id);
    -- A paused mapping or org hands nothing out, as with the worker's own
    -- claim (pgforce._outbound_claim).
    IF EXISTS (SELECT FROM pgforce.mapping pm JOIN pgforce.org po ON po.name = pm.org
               WHERE pm.id = p_mapping_id AND (pm.paused OR po.paused)) THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH candidates AS (
        SELECT o.id, o.record_id
        FROM pgforce.outbox o
        WHERE o.mapping_id = p_mapping_id AND o.claimed_at IS NULL
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), in_flight AS MATERIALIZED (
        -- One pass over the mapping's entries: no index covers claimed_at
        -- (see the table).
        SELECT DISTINCT f.record_id FROM pgforce.outbox f
        WHERE f.mapping_id = p_mapping_id AND f.claimed_at IS NOT NULL
    )
    -- By id from an array built once, not a join: see _outbound_claim.
    UPDATE pgforce.outbox o
    SET claimed_at = pg_catalog.now(), claimed_by = p_worker, attempts = o.attempts + 1,
        sent_from = coalesce(o.sent_from, pg_catalog.now())
    WHERE o.id = ANY (ARRAY(
        SELECT c.id FROM candidates c
        WHERE c.record_id NOT IN (SELECT i.record_id FROM in_flight i)))
    RETURNING o.*;
END
$$;

-- The worker streams outbox inserts through logical replication instead of
-- polling. Only inserts are published: the worker's own deletes of written
-- entries are of no interest to it. The stream only wakes the worker, which
-- reads the entries from the table, so from Postgres 15 on only the id
-- column is published: the walsender never turns the entries' jsonb into
-- text, and the worker never receives it.
-- Creating a publication needs CREATE on the database; without it pgforce
-- still works, polling the outbox.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'pgforce_outbox') THEN
        NULL;
    ELSIF pg_catalog.current_setting('server_version_num')::int >= 150000 THEN
        CREATE PUBLICATION pgforce_outbox FOR TABLE pgforce.outbox (id) WITH (publish = 'insert');
    ELSE
        CREATE PUBLICATION pgforce_outbox FOR TABLE pgforce.outbox WITH (publish = 'insert');
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgforce: could not create publication pgforce_outbox: %', SQLERRM
        USING HINT = 'Run as a role with CREATE on the database to let the worker stream the outbox; until then it polls.';
END
$$;
