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
    created_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    claimed_by text,
    attempts   integer     NOT NULL DEFAULT 0,
    retry_of   bigint,
    CONSTRAINT outbox_op_valid CHECK (op IN ('insert', 'update', 'delete')),
    -- insert: every column in new; update: the changed columns in new and
    -- their previous values in old; delete: the row in old.
    CONSTRAINT outbox_values_match_op CHECK (
        (op = 'insert' AND new IS NOT NULL)
        OR (op = 'update' AND new IS NOT NULL)
        OR (op = 'delete' AND new IS NULL)),
    CONSTRAINT outbox_claim_complete CHECK ((claimed_at IS NULL) = (claimed_by IS NULL))
);

-- Serves per-record ordering in claim() and the cancellation of a pending
-- insert when its row is deleted before it reached Salesforce.
CREATE INDEX outbox_mapping_record_idx ON pgforce.outbox (mapping_id, record_id, id);

COMMENT ON TABLE pgforce.outbox IS 'Captured Postgres changes not yet written to Salesforce, oldest first. The worker deletes entries once written.';
COMMENT ON COLUMN pgforce.outbox.record_id IS 'id of the row in the mapped table.';
COMMENT ON COLUMN pgforce.outbox.xid IS 'Transaction that made the change, so the worker can keep a transaction''s changes together.';
COMMENT ON COLUMN pgforce.outbox.retry_of IS 'The pgforce.error this entry retries, resolved when it succeeds.';

-- Claims up to p_limit unclaimed entries of one mapping, oldest first, for
-- worker p_worker. An entry is only handed out together with every earlier
-- entry of the same record, so that two workers never apply one record's
-- changes out of order: entries behind one that is claimed elsewhere (in
-- flight, or locked by a concurrent claim) wait for the next claim. The
-- UPDATE marks the claim in the same statement, so no lock is held while
-- the worker talks to Salesforce.
CREATE FUNCTION pgforce.claim(p_mapping_id integer, p_limit integer, p_worker text)
RETURNS SETOF pgforce.outbox
LANGUAGE sql AS $$
    WITH locked AS (
        SELECT o.id, o.record_id
        FROM pgforce.outbox o
        WHERE o.mapping_id = p_mapping_id AND o.claimed_at IS NULL
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), eligible AS (
        SELECT l.id
        FROM locked l
        WHERE NOT EXISTS (
            SELECT FROM pgforce.outbox e
            WHERE e.mapping_id = p_mapping_id AND e.record_id = l.record_id AND e.id < l.id
              AND e.id NOT IN (SELECT id FROM locked))
    )
    UPDATE pgforce.outbox o
    SET claimed_at = pg_catalog.now(), claimed_by = p_worker, attempts = o.attempts + 1
    FROM eligible
    WHERE o.id = eligible.id
    RETURNING o.*
$$;

COMMENT ON FUNCTION pgforce.claim(integer, integer, text) IS 'Worker: claim a batch of outbox entries of one mapping in per-record order (FOR UPDATE SKIP LOCKED).';

-- The worker streams outbox inserts through logical replication instead of
-- polling. Only inserts are published: the worker's own deletes of written
-- entries are of no interest to it. Creating a publication needs CREATE on
-- the database; without it pgforce still works, polling the outbox.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = 'pgforce_outbox') THEN
        CREATE PUBLICATION pgforce_outbox FOR TABLE pgforce.outbox WITH (publish = 'insert');
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'pgforce: could not create publication pgforce_outbox: %', SQLERRM
        USING HINT = 'Run as a role with CREATE on the database to let the worker stream the outbox; until then it polls.';
END
$$;
