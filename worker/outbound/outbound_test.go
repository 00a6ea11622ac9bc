package outbound_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/feed"
	"github.com/pgforce/pgforce/worker/outbound"
	"github.com/pgforce/pgforce/worker/salesforce"
)

func TestInsertUpdateDeleteReachSalesforceAndSfidIsWrittenBack(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry, annualrevenue) VALUES ('Acme', 'Energy', 1234567.89) RETURNING id`)
	sfid := b.waitSfid(t, "account", id)
	require.Equal(t, "Acme", b.sfField(t, "Account", sfid, "Name"))
	require.Equal(t, json.Number("1234567.89"), b.sfField(t, "Account", sfid, "AnnualRevenue"))
	var lastop string
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "SYNCED", lastop)

	b.exec(t, `UPDATE salesforce.account SET name = 'Acme 2' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "update in Salesforce", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Acme 2" })
	require.Equal(t, "Energy", b.sfField(t, "Account", sfid, "Industry"), "an update sends only the changed field")

	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)
	eventually(t, 10*time.Second, "delete in Salesforce", func() bool {
		return len(b.sfRecords(t, fmt.Sprintf("SELECT Id FROM Account WHERE Id = '%s'", sfid))) == 0
	})
	eventually(t, 5*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })

	// The NOTIFY wake-up can carry all three changes before the stream
	// has connected (creating the slot waits for running transactions).
	eventually(t, 10*time.Second, "status shows the stream", func() bool { return b.feedStatus(t) == "logical_replication" })
}

func TestConsecutiveChangesToOneRecordMergeIntoOneWrite(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	// Queue an insert and two updates before any worker runs.
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('First', 'Energy') RETURNING id`)
	b.exec(t, `UPDATE salesforce.account SET name = 'Second' WHERE id = $1`, id)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Banking' WHERE id = $1`, id)
	b.sim.ResetCalls()
	b.start(t, fastOptions())
	sfid := b.waitSfid(t, "account", id)
	require.Equal(t, "Second", b.sfField(t, "Account", sfid, "Name"))
	require.Equal(t, "Banking", b.sfField(t, "Account", sfid, "Industry"))
	calls := b.sim.Calls()
	var writes int64
	for k, v := range calls {
		if k == "POST /services/data/vXX.X/composite/sobjects" || k == "PATCH /services/data/vXX.X/composite/sobjects" {
			writes += v
		}
	}
	require.Equal(t, int64(1), writes, "three changes of one record make one create call: %v", calls)
	_ = ctx
}

func TestAnInsertSalesforceRefusesIsAnErrorThatFixingTheRowSettles(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())

	var bad, good int
	b.scalar(t, &bad, `INSERT INTO salesforce.account (name) VALUES ('BAD name') RETURNING id`)
	b.scalar(t, &good, `INSERT INTO salesforce.account (name) VALUES ('Good name') RETURNING id`)
	eventually(t, 10*time.Second, "good row synced", func() bool { return b.rowSfid(t, "account", good) != "" })

	var errID int64
	eventually(t, 10*time.Second, "error row", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, bad).Scan(&errID) == nil
	})
	var code, msg, dir, op string
	var fields []string
	b.scalar(t, &code, `SELECT error_code FROM pgforce.error WHERE id = $1`, errID)
	b.scalar(t, &msg, `SELECT message FROM pgforce.error WHERE id = $1`, errID)
	b.scalar(t, &dir, `SELECT direction FROM pgforce.error WHERE id = $1`, errID)
	b.scalar(t, &op, `SELECT operation FROM pgforce.error WHERE id = $1`, errID)
	b.scalar(t, &fields, `SELECT coalesce(fields, '{}') FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", code)
	require.Equal(t, "Name must not start with BAD", msg)
	require.Equal(t, "outbound", dir)
	require.Equal(t, "insert", op)

	var lastop, hcErr string
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, bad)
	b.scalar(t, &hcErr, `SELECT _hc_err FROM salesforce.account WHERE id = $1`, bad)
	require.Equal(t, "FAILED", lastop)
	var he struct {
		ErrorCode string   `json:"errorCode"`
		Message   string   `json:"message"`
		Fields    []string `json:"fields"`
	}
	require.NoError(t, json.Unmarshal([]byte(hcErr), &he))
	require.Equal(t, "FIELD_CUSTOM_VALIDATION_EXCEPTION", he.ErrorCode)
	require.Equal(t, "Name must not start with BAD", he.Message)

	// An update of the row sends it again, whole, as a retry would: still
	// refused, it counts as one more attempt of the same error, and the
	// row stays FAILED.
	b.exec(t, `UPDATE salesforce.account SET industry = 'Energy' WHERE id = $1`, bad)
	eventually(t, 10*time.Second, "a second attempt", func() bool {
		var attempts int
		b.scalar(t, &attempts, `SELECT attempts FROM pgforce.error WHERE id = $1`, errID)
		return attempts == 2
	})
	require.Equal(t, 1, b.openErrorsOfRow(t, bad), "one error per refused insert, however often it is sent")
	eventually(t, 5*time.Second, "the row failed again", func() bool {
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, bad)
		return lastop == "FAILED"
	})
	// Other records are not held up.
	var other int
	b.scalar(t, &other, `INSERT INTO salesforce.account (name) VALUES ('Other') RETURNING id`)
	eventually(t, 10*time.Second, "other row synced", func() bool { return b.rowSfid(t, "account", other) != "" })

	// Fixing the row is enough: the record is created with the fix and the
	// earlier update, and the error is resolved.
	b.exec(t, `UPDATE salesforce.account SET name = 'Fixed name' WHERE id = $1`, bad)
	sfid := b.waitSfid(t, "account", bad)
	require.Equal(t, "Fixed name", b.sfField(t, "Account", sfid, "Name"))
	require.Equal(t, "Energy", b.sfField(t, "Account", sfid, "Industry"))
	var state string
	eventually(t, 5*time.Second, "error resolved", func() bool {
		b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
		return state == "resolved"
	})
	eventually(t, 5*time.Second, "row synced", func() bool {
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, bad)
		return lastop == "SYNCED"
	})
	eventually(t, 5*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	var blocked int
	b.scalar(t, &blocked, `SELECT outbound_blocked FROM pgforce.status WHERE sobject = 'Account'`)
	require.Zero(t, blocked)
}

// pgforce.retry of a failed insert sends the row as it is now.
func TestRetryOfAFailedInsertSendsTheRowAsItIsNow(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	bad, errID := b.refusedInsert(t)
	// Fixed as the worker (a trigger, a migration of the application that
	// sets the origin): nothing is captured, and the retry sends it.
	b.exec(t, `WITH o AS (SELECT set_config('pgforce.origin', 'salesforce', true))
		UPDATE salesforce.account SET name = 'Fixed name' FROM o WHERE id = $1`, bad)
	require.Equal(t, 0, b.backlog(t))
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	sfid := b.waitSfid(t, "account", bad)
	require.Equal(t, "Fixed name", b.sfField(t, "Account", sfid, "Name"))
	var state string
	eventually(t, 5*time.Second, "error resolved", func() bool {
		b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
		return state == "resolved"
	})
}

func TestIgnoreDropsTheChangeAndRevertRestoresSalesforceValues(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())

	// Revert of a failed update: the row takes Salesforce's values again.
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Keep me', 'Energy') RETURNING id`)
	b.waitSfid(t, "account", id)
	b.exec(t, `UPDATE salesforce.account SET name = 'BAD rename', industry = 'Banking' WHERE id = $1`, id)
	var errID int64
	eventually(t, 10*time.Second, "update error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open' AND operation = 'update'`, id).Scan(&errID) == nil
	})
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "row reverted", func() bool {
		var name, industry, lastop string
		b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, id)
		b.scalar(t, &industry, `SELECT industry FROM salesforce.account WHERE id = $1`, id)
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
		return name == "Keep me" && industry == "Energy" && lastop == "SYNCED"
	})
	var state string
	b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, "resolved", state)
	require.Equal(t, 0, b.backlog(t), "a revert is not captured as a new change")

	// Revert of a failed insert: the row goes, nothing reaches Salesforce.
	var gone int
	b.scalar(t, &gone, `INSERT INTO salesforce.account (name) VALUES ('BAD insert') RETURNING id`)
	eventually(t, 10*time.Second, "insert error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, gone).Scan(&errID) == nil
	})
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "row removed", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE id = $1`, gone)
		return n == 0
	})
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'BAD insert'"))

	// Ignore: the error is closed and its change is not sent again.
	var ign int
	b.scalar(t, &ign, `INSERT INTO salesforce.account (name) VALUES ('BAD ignored') RETURNING id`)
	eventually(t, 10*time.Second, "insert error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, ign).Scan(&errID) == nil
	})
	b.exec(t, `SELECT pgforce.ignore($1)`, errID)
	b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, "ignored", state)
	var lastop string
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, ign)
	require.Equal(t, "FAILED", lastop)
	require.Equal(t, 0, b.backlog(t))
}

// A child whose parent has no Id yet waits for it without being claimed
// over and over: the drain of its mapping ends, and a cycle a moment later
// writes the parent first. (It used to spin in its mapping's drain, claiming the
// child thousands of times a second, while the parent's mapping never came
// round again; that is how a parent missed by one cycle left its child
// unsynced.)
func TestChildWaitingForItsParentIsNotClaimedOverAndOver(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	claims := b.countClaims(t, b.contactID)
	b.start(t, fastOptions())
	acc, con := b.insertParentAndChild(t)

	eventually(t, 10*time.Second, "the child claimed", func() bool { return claims(con) > 0 })
	before := claims(con)
	time.Sleep(time.Second)
	// One claim a MinBackoff (50 ms here) at most.
	t.Logf("claims of the waiting child in a second: %d", claims(con)-before)
	require.Less(t, claims(con)-before, 40, "claims of the waiting child in a second")

	b.exec(t, `SELECT pgforce.resume($1::integer)`, b.accountID)
	var accSfid, conSfid string
	eventually(t, 10*time.Second, "both synced", func() bool {
		accSfid, conSfid = b.rowSfid(t, "account", acc), b.rowSfid(t, "contact", con)
		return accSfid != "" && conSfid != ""
	})
	require.Equal(t, accSfid, b.sfField(t, "Contact", conSfid, "AccountId"))
}

// countClaims counts, from now on, the claims of each outbox entry of a
// mapping, by row id: attempts counts only those that may have sent it.
func (b *bundle) countClaims(t *testing.T, mappingID int) func(recordID int) int {
	t.Helper()
	b.exec(t, `CREATE TABLE public.claims_seen (mapping_id integer, record_id integer)`)
	b.exec(t, `CREATE FUNCTION public.count_claim() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO public.claims_seen VALUES (NEW.mapping_id, NEW.record_id); RETURN NULL; END $$`)
	b.exec(t, `CREATE TRIGGER count_claim AFTER UPDATE ON pgforce.outbox FOR EACH ROW
		WHEN (OLD.claimed_at IS NULL AND NEW.claimed_at IS NOT NULL) EXECUTE FUNCTION public.count_claim()`)
	return func(recordID int) int {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM public.claims_seen WHERE mapping_id = $1 AND record_id = $2`, mappingID, recordID)
		return n
	}
}

// A pass that defers a child schedules one more cycle a MinBackoff later.
// Other wake-ups start cycles too (here, commits to the parent's paused
// mapping), and each of those passes defers the child again: had each
// scheduled a cycle of its own, every wake-up would have started another
// endless chain, and the child's claims would grow with every commit.
func TestWakeUpsWhileAChildWaitsForItsParentDoNotMultiplyItsClaims(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	count := b.countClaims(t, b.contactID)
	b.start(t, fastOptions())
	_, con := b.insertParentAndChild(t)
	claims := func() int { return count(con) }
	eventually(t, 10*time.Second, "the child claimed", func() bool { return claims() > 0 })
	for i := 0; i < 20; i++ {
		b.exec(t, `INSERT INTO salesforce.account (name) VALUES ($1)`, fmt.Sprintf("Wake-up %d", i))
		time.Sleep(10 * time.Millisecond)
	}
	before := claims()
	time.Sleep(time.Second)
	t.Logf("claims of the waiting child: %d before the second, %d after", before, claims())
	// One claim a MinBackoff (50 ms here) and one per other wake-up; with
	// a chain per wake-up it was 148.
	require.Less(t, claims()-before, 40, "claims of the waiting child in the second after 20 wake-ups")
}

// insertParentAndChild inserts, in one transaction, an Account and a
// Contact that names it by its external id, and returns their row ids.
func (b *bundle) insertParentAndChild(t *testing.T) (acc, con int) {
	t.Helper()
	ids := b.insertInOneTx(t,
		`INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Parent Co', 'ext-1') RETURNING id`,
		`INSERT INTO salesforce.contact (lastname, account__r__ext_id__c) VALUES ('Child', 'ext-1') RETURNING id`)
	return ids[0], ids[1]
}

// insertInOneTx runs INSERT … RETURNING id statements in one transaction
// and returns the ids, in order.
func (b *bundle) insertInOneTx(t *testing.T, inserts ...string) []int {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	ids := make([]int, len(inserts))
	for i, q := range inserts {
		require.NoError(t, tx.QueryRow(ctx, q).Scan(&ids[i]), q)
	}
	require.NoError(t, tx.Commit(ctx))
	return ids
}

func TestParentAndChildInsertedInOneTransactionArriveLinked(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	acc, con := b.insertParentAndChild(t)

	var accSfid, conSfid string
	eventually(t, 10*time.Second, "both synced", func() bool {
		accSfid, conSfid = b.rowSfid(t, "account", acc), b.rowSfid(t, "contact", con)
		return accSfid != "" && conSfid != ""
	})
	require.Equal(t, accSfid, b.sfField(t, "Contact", conSfid, "AccountId"))
}

// A relationship column added to a mapped table after its triggers were
// installed works without any call: the insert that sets it first links the
// child, and the worker captures the column from then on.
func TestARelationshipColumnAddedLaterLinksChildrenWithoutAnyCall(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.exec(t, `ALTER TABLE salesforce.contact DROP COLUMN account__r__ext_id__c CASCADE`)
	b.exec(t, `SELECT pgforce._install_triggers($1)`, b.contactID)
	b.start(t, fastOptions())
	var first int
	b.scalar(t, &first, `INSERT INTO salesforce.contact (lastname) VALUES ('First') RETURNING id`)
	firstID := b.waitSfid(t, "contact", first)

	b.exec(t, `ALTER TABLE salesforce.contact ADD COLUMN account__r__ext_id__c varchar(64)`)
	acc, con := b.insertParentAndChild(t)
	accID := b.waitSfid(t, "account", acc)
	conID := b.waitSfid(t, "contact", con)
	require.Equal(t, accID, b.sfField(t, "Contact", conID, "AccountId"))

	// An update of the column is captured and sent too.
	eventually(t, 10*time.Second, "the column captured", func() bool {
		var captured bool
		b.scalar(t, &captured, `SELECT 'account__r__ext_id__c' = ANY (pgforce._captured_columns($1))
			AND EXISTS (SELECT FROM pg_trigger tg JOIN pg_attribute a ON a.attrelid = tg.tgrelid AND a.attnum = ANY (tg.tgattr::int2[])
			            WHERE tg.tgname = 'pgforce_status_update' AND tg.tgrelid = 'salesforce.contact'::regclass AND a.attname = 'account__r__ext_id__c')`, b.contactID)
		return captured
	})
	b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = 'ext-1' WHERE id = $1`, first)
	eventually(t, 10*time.Second, "the first contact linked", func() bool {
		return b.sfField(t, "Contact", firstID, "AccountId") == accID
	})
}

func TestTransientFaultsAreRetriedWithoutUserAction(t *testing.T) {
	b := setup(t, setupOptions{})
	// The next three write calls fail: a 503, a dropped connection and a
	// 403 REQUEST_LIMIT_EXCEEDED.
	b.sim.Inject(simFault("/services/data/v62.0/composite/sobjects", 503, false, 1))
	b.start(t, fastOptions())
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Flaky') RETURNING id`)
	eventually(t, 15*time.Second, "synced despite faults", func() bool { return b.rowSfid(t, "account", id) != "" })
	b.sim.Inject(simFault("/services/data/v62.0/composite/sobjects", 0, true, 1))
	b.exec(t, `UPDATE salesforce.account SET name = 'Flaky 2' WHERE id = $1`, id)
	sfid := b.rowSfid(t, "account", id)
	eventually(t, 15*time.Second, "update despite reset", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Flaky 2" })
	b.sim.Inject(simFault("/services/data/v62.0/composite/sobjects", 403, false, 1))
	b.exec(t, `UPDATE salesforce.account SET name = 'Flaky 3' WHERE id = $1`, id)
	eventually(t, 15*time.Second, "update despite limit", func() bool { return b.sfField(t, "Account", sfid, "Name") == "Flaky 3" })
	var errs int
	b.scalar(t, &errs, `SELECT count(*) FROM pgforce.error`)
	require.Zero(t, errs, "transient faults never become error rows")
}

// A failed update carried two fields; the user fixes only the one that
// was refused. The fix is sent with the current value of the other, so its
// success settles the error and both values reach Salesforce.
func TestErrorOfAFailedUpdateResolvesWhenTheFixedRowSucceeds(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Fine', 'Energy') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)

	b.exec(t, `UPDATE salesforce.account SET name = 'BAD name', industry = 'Banking' WHERE id = $1`, id)
	var errID int64
	eventually(t, 10*time.Second, "update error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, id).Scan(&errID) == nil
	})
	// An update of another field still fails (the refused name goes with
	// it) and counts as another attempt of the same error, not a new one.
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 10 WHERE id = $1`, id)
	eventually(t, 10*time.Second, "second attempt", func() bool {
		var attempts int
		b.scalar(t, &attempts, `SELECT attempts FROM pgforce.error WHERE id = $1`, errID)
		return attempts == 2
	})
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, id)
	require.Equal(t, 1, open)

	b.exec(t, `UPDATE salesforce.account SET name = 'Fixed name' WHERE id = $1`, id)
	eventually(t, 10*time.Second, "error resolved", func() bool {
		var state string
		b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
		return state == "resolved"
	})
	var lastop string
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
	require.Equal(t, "SYNCED", lastop)
	require.Equal(t, "Fixed name", b.sfField(t, "Account", sfid, "Name"))
	require.Equal(t, "Banking", b.sfField(t, "Account", sfid, "Industry"))
	revenue, err := b.sfField(t, "Account", sfid, "AnnualRevenue").(json.Number).Float64()
	require.NoError(t, err)
	require.Equal(t, 10.0, revenue)
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE state IN ('open', 'retrying')`)
	require.Zero(t, open)
}

// A backlog above the mapping's bulk_threshold goes through Bulk API 2.0 jobs of
// BulkBatchSize changes while claims come back full; a short claim ends
// Bulk mode, and a backlog below the threshold goes through Collections.
func TestBacklogAboveBulkThresholdIsWrittenThroughBulkJobs(t *testing.T) {
	b := setup(t, setupOptions{})
	const n = 130
	b.syncedAccounts(t, n, "Bulk")
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 7`)
	b.sim.ResetCalls()
	opts := fastOptions()
	opts.BulkBatchSize = 40
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 100`)
	b.start(t, opts)
	eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	var jobs, collections int64
	for k, v := range b.sim.Calls() {
		if strings.HasPrefix(k, "POST") && strings.HasSuffix(k, "/jobs/ingest") {
			jobs += v
		}
		if strings.Contains(k, "/composite/sobjects") {
			collections += v
		}
	}
	require.Equal(t, int64(1), collections, "the last 10: %v", b.sim.Calls())
	require.Equal(t, int64(3), jobs, "three full jobs of 40, then the last 10 in a short claim through Collections: %v", b.sim.Calls())
	got := b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account")
	require.Len(t, got, n)
	for _, r := range got {
		v, _ := r.Get("AnnualRevenue")
		f, err := v.(json.Number).Float64()
		require.NoError(t, err)
		require.Equal(t, 7.0, f, r.ID())
	}
	var notSynced int
	b.scalar(t, &notSynced, `SELECT count(*) FROM salesforce.account WHERE _hc_lastop IS DISTINCT FROM 'SYNCED'`)
	require.Zero(t, notSynced)
}

// Changes captured while a mapping is paused wait in the outbox; resuming
// it sends them at once, without waiting for another change to wake the
// worker.
func TestResumingAMappingSendsTheChangesQueuedWhilePaused(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncedAccounts(t, 3, "Paused")
	b.start(t, fastOptions())
	eventually(t, 10*time.Second, "worker streaming", func() bool { return b.feedStatus(t) == "logical_replication" })
	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 11`)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 3, b.backlog(t), "nothing is sent while the mapping is paused")
	b.exec(t, `SELECT pgforce.resume($1::integer)`, b.accountID)
	eventually(t, 5*time.Second, "the queued changes sent after resume", func() bool { return b.backlog(t) == 0 })
	for _, r := range b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account") {
		v, _ := r.Get("AnnualRevenue")
		f, err := v.(json.Number).Float64()
		require.NoError(t, err)
		require.Equal(t, 11.0, f, r.ID())
	}
}

// A mapping without a bulk_threshold (NULL) writes its backlog through
// sObject Collections: no threshold is neither a threshold of zero, which
// any backlog reaches, nor the default of 10,000, which this one does.
func TestMappingWithoutBulkThresholdDrainsEveryBacklogThroughCollections(t *testing.T) {
	b := setup(t, setupOptions{})
	const n = 10050
	b.syncedAccounts(t, n, "NoBulk")
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = NULL`)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 9`)
	b.sim.ResetCalls()
	opts := fastOptions()
	opts.BulkBatchSize = 40
	b.start(t, opts)
	eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	for k := range b.sim.Calls() {
		require.NotContains(t, k, "/jobs/ingest", "no Bulk job: %v", b.sim.Calls())
	}
	var written int
	for _, r := range b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account") {
		v, _ := r.Get("AnnualRevenue")
		if f, err := v.(json.Number).Float64(); err == nil && f == 9 {
			written++
		}
	}
	require.Equal(t, n, written)
}

// A backlog large enough for Bulk was captured moments before the drain,
// so the outbox's statistics still describe it as it was before; the
// worker analyzes it as the drain starts. last_analyze is set only by an
// ANALYZE someone ran, never by autovacuum.
func TestBulkDrainAnalyzesTheOutboxAsItStarts(t *testing.T) {
	b := setup(t, setupOptions{})
	const n = 130
	b.syncedAccounts(t, n, "Stats")
	var analyzed bool
	b.scalar(t, &analyzed, `SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'pgforce.outbox'::regclass`)
	require.False(t, analyzed, "analyzed before any backlog")
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 8`)
	opts := fastOptions()
	opts.BulkBatchSize = 40
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 100`)
	b.start(t, opts)
	eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	b.scalar(t, &analyzed, `SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'pgforce.outbox'::regclass`)
	require.True(t, analyzed, "the outbox is analyzed when a Bulk drain starts")
}

// While a backlog large enough for Bulk drains, the replication slot is
// dropped, so that the server neither decodes the drain's own writes nor
// keeps their WAL; once the backlog is gone the slot is created again and
// the stream delivers the next change. Both when the worker starts on a
// backlog (the slot left by an earlier run) and when the backlog builds
// up while it streams.
func TestBulkBacklogDrainsWithTheSlotDroppedAndStreamingResumesAfter(t *testing.T) {
	b := setup(t, setupOptions{})
	const n = 200
	b.syncedAccounts(t, n, "Hold")
	opts := fastOptions()
	opts.BulkBatchSize = 40
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 100`)
	slot := func() (exists, active bool) {
		r, err := b.pool.Query(context.Background(), `SELECT active FROM pg_replication_slots WHERE database = current_database()`)
		require.NoError(t, err)
		rows, err := pgx.CollectRows(r, pgx.RowTo[bool])
		require.NoError(t, err)
		return len(rows) > 0, len(rows) > 0 && rows[0]
	}
	var svc *outbound.Service
	drainWithoutSlot := func(revenue int) {
		t.Helper()
		eventually(t, 10*time.Second, "slot dropped while the backlog drains", func() bool {
			exists, _ := slot()
			return svc.FeedMode() == "backlog" && !exists && b.feedStatus(t) == "backlog"
		})
		b.sim.ClearFaults()
		eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
		eventually(t, 10*time.Second, "streaming again", func() bool {
			exists, active := slot()
			return svc.FeedMode() == "logical_replication" && exists && active && b.feedStatus(t) == "logical_replication"
		})
		for _, r := range b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account") {
			v, _ := r.Get("AnnualRevenue")
			f, err := v.(json.Number).Float64()
			require.NoError(t, err)
			require.Equal(t, float64(revenue), f, r.ID())
		}
	}
	// Slow Bulk calls keep each drain going while the test looks.
	slow := sim.Fault{Path: "/services/data/v62.0/jobs/ingest", Latency: 150 * time.Millisecond}

	b.exec(t, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, feed.SlotName(b.db.Name))
	b.sim.Inject(slow)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 8`)
	svc = b.start(t, opts)
	drainWithoutSlot(8)

	b.sim.Inject(slow)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 9`)
	drainWithoutSlot(9)

	var id int
	b.scalar(t, &id, `SELECT id FROM salesforce.account ORDER BY id LIMIT 1`)
	sfid := b.rowSfid(t, "account", id)
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 10 WHERE id = $1`, id)
	eventually(t, 10*time.Second, "the next change written", func() bool {
		v, ok := b.sfField(t, "Account", sfid, "AnnualRevenue").(json.Number)
		f, _ := v.Float64()
		return ok && f == 10
	})
}

// The result transaction's statements are planned for each batch, never
// kept as prepared statements: a generic plan made while the outbox held a
// few entries, reused for a backlog, filtered the whole backlog through
// each batch's ids one by one (over a second per batch at 100,000).
func TestResultTransactionsArePlannedForTheirOwnBatch(t *testing.T) {
	b := setup(t, setupOptions{})
	ctx := context.Background()
	b.syncedAccounts(t, 30, "Plan")

	cfg, err := pgxpool.ParseConfig(b.db.ConnString)
	require.NoError(t, err)
	cfg.MaxConns = 3
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	opts := fastOptions()
	opts.BatchSize = 3 // ten result transactions: past the five runs after which Postgres may keep a generic plan
	svc := outbound.New(pool, b.sf, testLogger(t), opts)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 5`)
	eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	stop()
	require.NoError(t, <-done)

	// The worker's other statements are cached as prepared statements, so
	// every connection it used holds some: that shows the check looks at
	// the worker's connections. (Which connection ran the claims depends
	// on timing; one whose query was cancelled at stop is closed.)
	var cached, results int
	for _, c := range pool.AcquireAllIdle(ctx) {
		var na, nr int
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*),
			count(*) FILTER (WHERE statement LIKE '%pgforce.outbox o WHERE o.id = ANY%' OR statement LIKE '%true AS busy FROM pgforce.outbox%')
			FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%'`).Scan(&na, &nr))
		cached, results = cached+na, results+nr
		c.Release()
	}
	require.Positive(t, cached, "the worker's cached statements are seen on its connections")
	require.Zero(t, results, "no statement of the result transaction is kept prepared")
}

// A change made while the row's insert is in flight waits in the outbox
// when the insert's Id comes back; the row says PENDING until that change
// is in Salesforce too, never SYNCED in between.
func TestRowChangedWhileItsInsertIsInFlightStaysPendingUntilTheChangeIsWritten(t *testing.T) {
	b := setup(t, setupOptions{})
	// Every Collections write takes a second, so that the update is made
	// while the insert is in flight and is still queued or in flight when
	// the insert's Id is written back.
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", Latency: time.Second})
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Acme') RETURNING id`)
	b.waitClaimed(t, id)
	b.exec(t, `UPDATE salesforce.account SET name = 'Acme 2' WHERE id = $1`, id)

	var lastop string
	var queued bool
	eventually(t, 10*time.Second, "sfid written back", func() bool {
		var sfid string
		b.scalar(t, &sfid, `SELECT coalesce(sfid, '') FROM salesforce.account WHERE id = $1`, id)
		if sfid == "" {
			return false
		}
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
		b.scalar(t, &queued, `SELECT EXISTS (SELECT FROM pgforce.outbox WHERE mapping_id = $1 AND record_id = $2)`, b.accountID, id)
		return true
	})
	require.True(t, queued, "the update is written a second after the insert, so it waits when the Id comes back")
	require.Equal(t, "PENDING", lastop, "the row's update has not reached Salesforce yet")

	var sfid string
	eventually(t, 10*time.Second, "update written and row synced", func() bool {
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
		sfid = b.rowSfid(t, "account", id)
		return lastop == "SYNCED"
	})
	require.Equal(t, "Acme 2", b.sfField(t, "Account", sfid, "Name"))
}

// An application trigger that fills in a column right after the insert
// (AFTER INSERT, with an UPDATE of the new row) changes the row before the
// insert is captured. Salesforce must end with the row as the trigger left
// it, not as the INSERT wrote it.
func TestAColumnThatAnAfterInsertTriggerFillsInReachesSalesforce(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `CREATE FUNCTION public.classify() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			UPDATE salesforce.account SET industry = 'Class ' || NEW.id WHERE id = NEW.id;
			RETURN NULL;
		END $$`)
	b.exec(t, `CREATE TRIGGER classify AFTER INSERT ON salesforce.account FOR EACH ROW EXECUTE FUNCTION public.classify()`)
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Acme') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)
	eventually(t, 5*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Equal(t, "Acme", b.sfField(t, "Account", sfid, "Name"))
	require.Equal(t, fmt.Sprintf("Class %d", id), b.sfField(t, "Account", sfid, "Industry"))
}

// An application that replaces a row (deletes it and inserts one with the
// same id, in one transaction) replaces the record: the old record is
// deleted in Salesforce and the new row becomes a record of its own. Put
// back with its sfid, the row is the same record, written again.
func TestARowDeletedAndInsertedAgainWithItsIdReplacesItsRecord(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Old', 'Energy') RETURNING id`)
	old := b.waitSfid(t, "account", id)

	b.exec(t, fmt.Sprintf(`BEGIN;
		DELETE FROM salesforce.account WHERE id = %[1]d;
		INSERT INTO salesforce.account (id, name) VALUES (%[1]d, 'Replacement');
		COMMIT`, id))
	var replacement string
	eventually(t, 10*time.Second, "the new row gets an Id of its own", func() bool {
		replacement = b.rowSfid(t, "account", id)
		return replacement != "" && replacement != old
	})
	eventually(t, 10*time.Second, "the old record deleted", func() bool {
		return len(b.sfRecords(t, fmt.Sprintf("SELECT Id FROM Account WHERE Id = '%s'", old))) == 0
	})
	require.Equal(t, "Replacement", b.sfField(t, "Account", replacement, "Name"))
	require.Nil(t, b.sfField(t, "Account", replacement, "Industry"), "a new record, not the old one updated")
	eventually(t, 5*time.Second, "outbox drained and the row settled", func() bool {
		var lastop string
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, id)
		return b.backlog(t) == 0 && lastop == "SYNCED"
	})

	b.exec(t, fmt.Sprintf(`BEGIN;
		DELETE FROM salesforce.account WHERE id = %[1]d;
		INSERT INTO salesforce.account (id, sfid, name) VALUES (%[1]d, '%[2]s', 'Copy');
		COMMIT`, id, replacement))
	eventually(t, 10*time.Second, "the record written again", func() bool {
		return b.sfField(t, "Account", replacement, "Name") == "Copy"
	})
	eventually(t, 5*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Equal(t, replacement, b.rowSfid(t, "account", id))
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE state = 'open'`)
	require.Zero(t, open)
}

// Reverting a delete that Salesforce refused puts the row back, under its
// old id, with the record's values.
func TestRevertOfARefusedDeletePutsTheRowBack(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Keep me', 'Energy') RETURNING id`)
	sfid := b.waitSfid(t, "account", id)

	b.sim.Inject(sim.Fault{Path: "/services/data/", Method: "DELETE", Status: 400, Count: 1})
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)
	var errID int64
	eventually(t, 10*time.Second, "delete error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open' AND operation = 'delete'`, id).Scan(&errID) == nil
	})
	require.Equal(t, "Keep me", b.sfField(t, "Account", sfid, "Name"), "the record is still in Salesforce")

	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "row back", func() bool {
		var n int
		b.scalar(t, &n, `SELECT count(*) FROM salesforce.account WHERE id = $1 AND sfid = $2 AND name = 'Keep me' AND industry = 'Energy' AND _hc_lastop = 'SYNCED'`, id, sfid)
		return n == 1
	})
	var state string
	b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, "resolved", state)
	require.Equal(t, 0, b.backlog(t), "putting the row back is not captured")
}

// Changes captured while a mapping was read_write still reach Salesforce
// after it is made read_only, as with Heroku Connect; new writes are refused.
func TestChangesCapturedBeforeAMappingIsMadeReadOnlyAreStillSent(t *testing.T) {
	b := setup(t, setupOptions{})
	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('Before', 'Energy') RETURNING id`)
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_only' WHERE sobject = 'Account'`)
	b.start(t, fastOptions())

	sfid := b.waitSfid(t, "account", id)
	require.Equal(t, "Before", b.sfField(t, "Account", sfid, "Name"))
	eventually(t, 5*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	_, err := b.pool.Exec(context.Background(), `UPDATE salesforce.account SET name = 'After' WHERE id = $1`, id)
	require.ErrorContains(t, err, "read_only")
}

// A row deleted while its insert is in flight is deleted in Salesforce
// once the insert has created the record: the delete's entry takes the
// record's Id when the insert's result is recorded.
func TestARowDeletedWhileItsInsertIsInFlightIsDeletedInSalesforce(t *testing.T) {
	b := setup(t, setupOptions{})
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", Method: "POST", Latency: time.Second})
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name) VALUES ('Short-lived') RETURNING id`)
	b.waitClaimed(t, id)
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, id)

	eventually(t, 15*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'Short-lived'"), "the record was created and then deleted")
}

// A change that leaves nothing to send to Salesforce (a Heroku Connect
// relationship column cleared to NULL names no field) still settles its
// row: it does not stay PENDING.
func TestAChangeWithNothingToSendLeavesTheRowSynced(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	_, con := b.insertParentAndChild(t)
	b.waitSfid(t, "contact", con)

	b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = NULL WHERE id = $1`, con)
	eventually(t, 10*time.Second, "row synced", func() bool {
		var lastop string
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.contact WHERE id = $1`, con)
		return lastop == "SYNCED" && b.backlog(t) == 0
	})
}

// A Bulk job whose close fails is looked at before the batch goes through
// Collections instead: one still open is aborted, so that no job is left
// behind to write the batch's values again over newer ones.
func TestABulkJobWhoseCloseFailsIsAbortedBeforeTheBatchGoesThroughCollections(t *testing.T) {
	b := setup(t, setupOptions{})
	const n = 40
	b.syncedAccounts(t, n, "Bulk")
	b.exec(t, `UPDATE salesforce.account SET annualrevenue = 7`)
	opts := fastOptions()
	opts.BulkBatchSize = 40
	b.exec(t, `UPDATE pgforce.mapping SET bulk_threshold = 10`)
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/jobs/ingest/", Method: "PATCH", Status: 400, Count: 1})
	b.start(t, opts)
	eventually(t, 30*time.Second, "backlog drained", func() bool { return b.backlog(t) == 0 })
	for _, r := range b.sfRecords(t, "SELECT Id, AnnualRevenue FROM Account") {
		v, _ := r.Get("AnnualRevenue")
		require.Equal(t, json.Number("7.00"), v, r.ID())
	}

	states := b.ingestStates(t)
	require.NotEmpty(t, states)
	for _, st := range states {
		require.NotEqual(t, "Open", st, "no job left open")
	}
}

// A row deleted and inserted again with its id while the first insert is
// in flight: the first record is created and then deleted, and the new row
// becomes a record of its own; it never takes the first record's Id.
func TestARowReplacedWhileItsInsertIsInFlightEndsAsARecordOfItsOwn(t *testing.T) {
	b := setup(t, setupOptions{})
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", Method: "POST", Latency: time.Second, Count: 1})
	b.start(t, fastOptions())

	var id int
	b.scalar(t, &id, `INSERT INTO salesforce.account (name, industry) VALUES ('First', 'Energy') RETURNING id`)
	b.waitClaimed(t, id)
	b.exec(t, fmt.Sprintf(`BEGIN;
		DELETE FROM salesforce.account WHERE id = %[1]d;
		INSERT INTO salesforce.account (id, name) VALUES (%[1]d, 'Second');
		COMMIT`, id))

	eventually(t, 15*time.Second, "outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Name = 'First'"), "the first record was deleted")
	second := b.sfRecords(t, "SELECT Id, Industry FROM Account WHERE Name = 'Second'")
	require.Len(t, second, 1)
	require.Equal(t, second[0].ID(), b.rowSfid(t, "account", id))
	var deleted []string
	require.NoError(t, b.sf.QueryAll(context.Background(), "SELECT Id FROM Account WHERE IsDeleted = true", func(r salesforce.Record) error {
		deleted = append(deleted, r.ID())
		return nil
	}))
	require.Len(t, deleted, 1, "the first record was deleted, not renamed into the second")
	require.NotEqual(t, deleted[0], second[0].ID())
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE state = 'open'`)
	require.Zero(t, open)
}

// A worker killed while Salesforce runs a Bulk job of its own: the job's
// entries stay held until the job ends, so that the change made since is
// sent after the job's older values, not before them.
func TestTheEntriesOfADeadWorkersBulkJobStayHeldUntilTheJobEnds(t *testing.T) {
	b := setup(t, setupOptions{bulkDelay: 2 * time.Second})
	ctx := context.Background()
	b.syncedAccounts(t, 1, "Acme")
	var id int
	var sfid string
	b.scalar(t, &id, `SELECT id FROM salesforce.account`)
	sfid = b.rowSfid(t, "account", id)

	// What the dead worker left: its job, closed and still running in
	// Salesforce, which writes the name it had claimed.
	job, err := b.sf.CreateIngestJob(ctx, salesforce.IngestJob{Object: "Account", Operation: "update"})
	require.NoError(t, err)
	require.NoError(t, b.sf.UploadIngestData(ctx, job.ID, []string{"Id", "Name"}, func(w *salesforce.CSVWriter) error {
		return w.Write(sfid, "Old value")
	}))
	_, err = b.sf.CloseIngestJob(ctx, job.ID)
	require.NoError(t, err)
	var entry int64
	b.scalar(t, &entry, `INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid, new, claimed_at, claimed_by)
		VALUES ($1, 'update', $2, $3, '{"name": "Old value"}', now() - interval '1 hour', 'dead worker') RETURNING id`, b.accountID, id, sfid)
	b.exec(t, `INSERT INTO pgforce.outbound_bulk_job (job_id, mapping_id, worker, entries) VALUES ($1, $2, 'dead worker', $3)`,
		job.ID, b.accountID, []int64{entry})
	// The user's change since, queued behind the dead worker's.
	b.exec(t, `UPDATE salesforce.account SET name = 'Newest' WHERE id = $1`, id)

	b.start(t, fastOptions())
	eventually(t, 20*time.Second, "the job ended and the outbox drained", func() bool {
		info, err := b.sf.IngestJobInfo(ctx, job.ID)
		require.NoError(t, err)
		return info.Terminal() && b.backlog(t) == 0
	})
	require.Equal(t, "Newest", b.sfField(t, "Account", sfid, "Name"), "the newest change went after the job")
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM pgforce.outbound_bulk_job`)
	require.Zero(t, rows)
}

// The fix of a refused insert goes as the insert of the whole row. Its
// answer lost (Salesforce created the record), it is sent again as that
// insert, which first looks for the record it may have made: one record,
// not two.
func TestAFixedRowWhoseCreateAnswerIsLostMakesOneRecord(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	row, _ := b.refusedInsert(t)
	b.sim.Inject(sim.Fault{Path: "/services/data/v62.0/composite/sobjects", Method: "POST", LoseAnswer: true, Count: 1})
	b.exec(t, `UPDATE salesforce.account SET name = 'Fixed once' WHERE id = $1`, row)
	sfid := b.waitSfid(t, "account", row)
	recs := b.sfRecords(t, `SELECT Id FROM Account WHERE Name = 'Fixed once'`)
	require.Len(t, recs, 1, "the fix made one record")
	require.Equal(t, sfid, recs[0].ID())
	eventually(t, 10*time.Second, "the error settled", func() bool {
		return b.openErrorsOfRow(t, row) == 0
	})
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account WHERE name = 'Fixed once'`)
	require.Equal(t, 1, rows)
}

// refusedInsert inserts an Account that Salesforce refuses (its validation
// rule takes no name starting with BAD) and waits for the error: the row's
// id and the error's.
func (b *bundle) refusedInsert(t *testing.T) (row int, errID int64) {
	t.Helper()
	b.scalar(t, &row, `INSERT INTO salesforce.account (name) VALUES ('BAD name') RETURNING id`)
	eventually(t, 10*time.Second, "the insert refused", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE record_id = $1 AND state = 'open'`, row).Scan(&errID) == nil
	})
	return row, errID
}
