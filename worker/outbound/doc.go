// Package outbound writes the changes users make in Postgres to Salesforce.
//
// Capture triggers (sql/060_capture.sql) append every change of a
// read_write table to pgforce.outbox in the user's transaction. A Service
// learns of new entries from worker/feed (logical replication, or NOTIFY
// plus a slow safety poll where that is unavailable) and drains them:
//
//  1. Claim a batch of one mapping with pgforce._outbound_claim
//     (sql/120_outbound.sql) in a single short statement; no transaction
//     is held open across a Salesforce call. Claims keep each record's
//     changes in order, even with several workers, and leave the changes
//     of a record whose insert failed queued until the user acts.
//  2. Merge consecutive changes of one record into one, with the latest
//     value of each field; find Ids written back since the change was
//     captured; resolve external-id relationship columns
//     (<lookup>__r__<extid>) to the parent's Id when the parent row is
//     mapped here, else send them as the relationship by external id.
//     Mappings are drained parents first, so a Contact inserted in the
//     same transaction as its Account gets the Account's new Id.
//  3. Write through sObject Collections, 200 records per call,
//     allOrNone=false, a few calls at once: inserts (as upserts by
//     external id when the mapping has upsert_field, so a crash between
//     Salesforce's success and our write-back never duplicates; without
//     one, an insert an earlier attempt may have created is looked for
//     first, see findCreated), updates,
//     deletes. When the mapping's backlog is at least its
//     bulk_threshold (pgforce.mapping; NULL: never), each claim takes
//     Options.BulkBatchSize
//     entries, for as long as claims come back full, and every operation
//     group of it (except plain inserts, whose results cannot be matched)
//     goes through one Bulk API 2.0 ingest job. Meanwhile the feed is held
//     off (see worker/feed): its slot is dropped until the backlog is gone.
//  4. Record the outcome in one transaction, as the worker (pgforce.origin
//     = 'salesforce', so nothing is captured again): sfid and _hc_lastop
//     SYNCED on the rows; for refused records a pgforce.error row
//     (direction outbound) and _hc_lastop FAILED with _hc_err
//     {"errorCode","message","fields"}; errors that a later success
//     settles are resolved (a later update of a record whose update failed
//     carries the failed fields again, so that its success settles the
//     error); written entries are deleted; while the inbound worker reads
//     whole records of the mapping, the records written or deleted are
//     noted for it (pgforce.outbound_written: a read that reached one
//     before the write reads it again rather than apply what the write
//     replaced, see pgforce.inbound_read). Transient failures (5xx,
//     timeouts, dropped connections, UNABLE_TO_LOCK_ROW,
//     REQUEST_LIMIT_EXCEEDED) put the entries back and back the mapping off
//     exponentially; the user never has to act on them.
//
// The three stages form a pipeline: while batches are in flight to
// Salesforce (up to three of a mapping between send and record, so that
// Bulk jobs, which mostly wait for Salesforce, overlap) the next is claimed
// and prepared and finished ones are recorded, each in a result
// transaction of its own, at the same time. Batches never share a record,
// so each record's changes stay in order. A batch that was sent is always recorded, even after another
// batch failed; batches not yet sent then go back to the queue.
//
// Salesforce's edits that a row has not heard of yet: for a while after
// the worker starts or a mapping or its org is resumed (see checkCatchUp), and all
// the time on a polled mapping under a policy Salesforce's edit may win
// (see checkPolled), an update of a record Salesforce changed after its
// row last heard of it waits until the inbound side has applied that
// change through the mapping's conflict policy.
//
// Locking: the result transaction locks the mapped rows (by id) before the
// outbox entries, the order user statements and pgforce.inbound_filter
// (which the inbound worker calls before applying a change) use too. A
// result transaction that Postgres aborts anyway (deadlock with a writer
// locking several rows in another order, serialization failure) runs
// again; one that still fails keeps its outcome in memory and its entries
// claimed, and is recorded at the start of the next cycle, so entries are
// never left claimed by a live worker and plain inserts are never sent
// twice. When the CDC echo of an insert was applied before the Id was
// written back, the row the inbound worker created for it is merged into
// the user's row (pgforce._outbound_adopt_echo_rows).
//
// Repairs: pgforce.retry re-queues the row (its changes are sent again),
// pgforce.ignore drops the change, pgforce.revert makes the Service read
// the record from Salesforce and write its values into the row (or delete
// the row when its insert never created a record).
//
// Crashes: a worker records a heartbeat in pgforce.outbound_worker; the
// claims of a worker silent for Options.ClaimLease go back to the queue.
//
// Use from the worker's composition root:
//
//	svc := outbound.New(pool, sfClient, logger, outbound.Options{Budget: b})
//	go svc.Run(ctx) // returns nil when ctx ends, after the batch in flight
//
// Mappings are read from pgforce.mapping on every drain cycle (read_write,
// with columns set by describe), so mapping changes need no signal; call
// Kick after a resume to drain at once.
package outbound
