package inbound_test

import (
	"context"
	"fmt"
	"github.com/pgforce/pgforce/sim"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// corrupt changes a mapped row behind the worker's back, so that only a
// read from Salesforce can restore it.
func (e *env) corrupt(table, sfid, col, value string) {
	e.t.Helper()
	e.exec(fmt.Sprintf(`BEGIN; SET LOCAL pgforce.origin = 'salesforce'; UPDATE salesforce.%s SET %s = '%s' WHERE sfid = '%s'; COMMIT`, table, col, value, sfid))
}

func TestGapEventsReReadTheListedRecords(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"}, map[string]any{"Name": "Globex"}, map[string]any{"Name": "Initech"})
	e.mapSynced("Account", []string{"Name"}, "cdc")
	e.corrupt("account", ids[0], "name", "wrong")
	e.corrupt("account", ids[1], "name", "wrong")
	e.corrupt("account", ids[2], "name", "untouched")
	e.sim.ResetCalls()
	require.NoError(t, e.sim.ForceGap("Account", "GAP_UPDATE", ids[0], ids[1]))
	e.waitValue("account", ids[0], "name", "Acme")
	e.waitValue("account", ids[1], "name", "Globex")
	require.Equal(t, "untouched", e.value("account", ids[2], "name"), "only the listed records are read")
	require.Equal(t, int64(1), e.calls("POST /services/data/vXX.X/composite/sobjects/Account"), "both ids in one retrieve call")
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.inbound_reread`), "the re-read queue is drained")

	// GAP_DELETE of a deleted record marks it deleted.
	_, err := e.sf.Delete(context.Background(), []string{ids[2]})
	require.NoError(t, err)
	e.waitValue("account", ids[2], "isdeleted", "true")
	e.corrupt("account", ids[2], "isdeleted", "false")
	require.NoError(t, e.sim.ForceGap("Account", "GAP_DELETE", ids[2]))
	e.waitValue("account", ids[2], "isdeleted", "true")
}

func TestGapOverflowResyncsBySystemModstamp(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"}, map[string]any{"Name": "Globex"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	e.corrupt("account", ids[0], "name", "wrong")
	e.corrupt("account", ids[1], "name", "wrong")
	e.sim.ResetCalls()
	require.NoError(t, e.sim.ForceGap("Account", "GAP_OVERFLOW"))
	e.waitValue("account", ids[0], "name", "Acme")
	e.waitValue("account", ids[1], "name", "Globex")
	require.Positive(t, e.calls("GET /services/data/vXX.X/queryAll"), "the resync reads by SystemModstamp with queryAll")
	e.eventually(5*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM pgforce.mapping WHERE id = $1 AND resync_requested_at IS NULL`, id)
		return n == 1, "resync_requested_at not cleared"
	})
}

func TestSeedOfOverAHundredThousandRecordsOverflowsAndIsResynced(t *testing.T) {
	e := newEnv(t)
	e.opts.BulkThreshold = 50000
	e.opts.BatchSize = 20000
	e.mapSynced("Gadget__c", gadgetFields, "cdc")
	e.seedGadgets(100001) // one transaction: Salesforce sends GAP_OVERFLOW
	e.eventually(60*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM salesforce.gadget__c`)
		return n == 100001, fmt.Sprintf("%d rows", n)
	})
	require.Equal(t, int64(1), e.calls("POST /services/data/vXX.X/jobs/query"), "a resync this large goes through Bulk")
}

func TestExpiredReplayIDTriggersResync(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Acme 2"}))
	e.waitValue("account", ids[0], "name", "Acme 2")
	e.stop()
	var stored string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT cdc_replay_id FROM pgforce.mapping WHERE id = $1`, id).Scan(&stored))
	require.NotEmpty(t, stored)

	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Acme 3"}))
	e.sim.ExpireReplay(0) // the change above is no longer replayable
	e.start()
	e.waitValue("account", ids[0], "name", "Acme 3")
	// And the stream works again afterwards, from the tip.
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "Acme 4"}))
	e.waitValue("account", ids[0], "name", "Acme 4")
}

func TestExpiredTokenIsRefreshedAndLostStreamingSessionResubscribes(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	e.mapSynced("Account", []string{"Name"}, "cdc")

	e.sim.ExpireSessions()
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "after expiry"}))
	e.waitValue("account", ids[0], "name", "after expiry")
	require.Positive(t, e.calls("POST /services/oauth2/token"), "the worker logged in again")

	e.sim.DropStreamingSessions() // next connect answers 403::Unknown client
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "after drop"}))
	e.waitValue("account", ids[0], "name", "after drop")
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "and again"}))
	e.waitValue("account", ids[0], "name", "and again")
}

func TestBadFieldPutsMappingInErrorNamingFieldAndFix(t *testing.T) {
	e := newEnv(t)
	id := e.mapping("Account", []string{"Name", "Nmae__c"}, "auto")
	unknown := e.mapping("Acount", []string{"Name"}, "auto")
	e.start()
	e.waitState(id, "error")
	_, detail := e.state(id)
	require.Contains(t, detail, "Nmae__c")
	require.Contains(t, detail, "array_remove(fields, 'Nmae__c')", "the detail gives the SQL that fixes it")
	e.waitState(unknown, "error")
	_, detail = e.state(unknown)
	require.Contains(t, detail, "Acount")
	require.Contains(t, detail, "SET sobject")

	// Fixing the mapping is enough: it is described and loaded again.
	e.exec(`UPDATE pgforce.mapping SET fields = '{Name}' WHERE id = $1`, id)
	e.waitState(id, "synced")
	require.Equal(t, 0, e.count(`SELECT count(*) FROM salesforce.account`))
}

// Salesforce upserts only by an External ID field: a read_write mapping
// whose upsert_field is not one is put in error, saying so, before any
// insert fails for it.
func TestAnUpsertFieldThatIsNoExternalIDPutsTheMappingInError(t *testing.T) {
	e := newEnv(t)
	var id int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field) VALUES ('Lead', '{LastName,Company}', 'read_write', 'LastName') RETURNING id`).Scan(&id))
	e.start()
	e.waitState(id, "error")
	_, detail := e.state(id)
	require.Contains(t, detail, "upsert_field LastName of Lead is not an External ID field")
	require.Contains(t, detail, "SET upsert_field = NULL")

	e.exec(`UPDATE pgforce.mapping SET upsert_field = NULL WHERE id = $1`, id)
	e.waitState(id, "synced")
}

func TestAPIBudgetDefersLoadsAndLimitExceededIsShownAndWaitedOut(t *testing.T) {
	e := newEnv(t)
	e.create("Account", map[string]any{"Name": "Acme"})
	// 50% of 100,000 is pgforce's; loads stop at 80% of that.
	e.sim.SetAPIUsage(45000)
	_, err := e.sf.Limits(context.Background()) // the client learns the usage from this answer
	require.NoError(t, err)
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.sim.ResetCalls()
	e.start()
	e.eventually(10*time.Second, func() (bool, string) {
		_, detail := e.state(id)
		return strings.Contains(detail, "API budget"), "state_detail: " + detail
	})
	time.Sleep(500 * time.Millisecond)
	require.Zero(t, e.calls("GET /services/data/vXX.X/sobjects"), "no describe while the budget is spent")
	require.Zero(t, e.calls("GET /services/data/vXX.X/query"), "no load while the budget is spent")

	e.sim.SetAPIUsage(100)
	e.waitState(id, "synced")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.account`))
	e.stop()

	// REQUEST_LIMIT_EXCEEDED: back off and say so in pgforce.status.
	e.sim.ForceLimitExceeded(true)
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	e.start()
	e.eventually(10*time.Second, func() (bool, string) {
		var detail string
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT coalesce(state_detail, '') FROM pgforce.status WHERE mapping_id = $1`, id).Scan(&detail))
		return strings.Contains(detail, "REQUEST_LIMIT_EXCEEDED"), "status detail: " + detail
	})
	e.sim.ForceLimitExceeded(false)
	e.waitState(id, "synced")
}

func TestPollingMappingPicksUpCreatesUpdatesAndDeletes(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"}, map[string]any{"Name": "Globex"})
	id := e.mapSynced("Account", []string{"Name", "Industry"}, "poll")
	require.Equal(t, "Acme", e.value("account", ids[0], "name"))
	var mode string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT inbound_mode FROM pgforce.mapping WHERE id = $1`, id).Scan(&mode))
	require.Equal(t, "poll", mode)

	newIDs := e.create("Account", map[string]any{"Name": "Initech"})
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Industry": "Banking"}))
	_, err := e.sf.Delete(context.Background(), []string{ids[1]})
	require.NoError(t, err)
	e.waitValue("account", newIDs[0], "name", "Initech")
	e.waitValue("account", ids[0], "industry", "Banking")
	require.Equal(t, "Acme", e.value("account", ids[0], "name"))
	e.waitValue("account", ids[1], "isdeleted", "true")
	require.Positive(t, e.calls("GET /services/data/vXX.X/queryAll"))
	require.Zero(t, e.calls("POST /cometd/"), "a polling mapping does not stream")
}

func TestPauseStopsSyncAndResumeCatchesUp(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	e.exec(`SELECT pgforce.pause($1::integer)`, id)
	e.eventually(5*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM pgforce.mapping WHERE id = $1 AND inbound_owner IS NULL`, id)
		return n == 1, "lease still held"
	})
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "while paused"}))
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, "Acme", e.value("account", ids[0], "name"), "a paused mapping is not synced")
	st, _ := e.state(id)
	require.Equal(t, "paused", st)

	e.exec(`SELECT pgforce.resume($1::integer)`, id)
	e.waitValue("account", ids[0], "name", "while paused")
	e.waitState(id, "synced")
}

func TestReloadNeverLeavesTheTableEmptyToReaders(t *testing.T) {
	e := newEnv(t)
	e.opts.BatchSize = 100
	e.seedGadgets(2000)
	id := e.mapSynced("Gadget__c", []string{"Name"}, "cdc")
	e.sim.ResetCalls()
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	minSeen := 2000
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		minSeen = min(minSeen, e.count(`SELECT count(*) FROM salesforce.gadget__c`))
		st, _ := e.state(id)
		if st == "synced" && e.calls("GET /services/data/vXX.X/query") > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, _ := e.state(id)
	require.Equal(t, "synced", st)
	require.Positive(t, e.calls("GET /services/data/vXX.X/query"), "the reload read the object again")
	require.Equal(t, 2000, minSeen, "readers always saw every row")
}

func TestReloadMarksRecordsDeletedWhileNobodySyncedAsDeleted(t *testing.T) {
	e := newEnv(t)
	e.opts.Overlap = time.Millisecond
	ids := e.create("Account", map[string]any{"Name": "Acme"}, map[string]any{"Name": "Globex"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	e.stop()
	_, err := e.sf.Delete(context.Background(), []string{ids[1]})
	require.NoError(t, err)
	e.exec(`SELECT pgforce.reload($1::integer)`, id) // forgets the replay id: the delete event is not replayed
	time.Sleep(10 * time.Millisecond)
	e.start()
	e.waitState(id, "synced")
	e.waitValue("account", ids[1], "isdeleted", "true")
	require.Equal(t, "false", e.value("account", ids[0], "isdeleted"))
	require.Zero(t, e.count(`SELECT count(*) FROM pgforce.inbound_seen`))
}

// A field added while the mapping is paused gets its column, filled from
// Salesforce, once it is resumed.
func TestAFieldAddedWhileTheMappingIsPausedIsLoadedAfterResume(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "Industry": "Energy"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")

	e.exec(`SELECT pgforce.pause($1::integer)`, id)
	e.exec(`UPDATE pgforce.mapping SET fields = fields || '{Industry}' WHERE id = $1`, id)
	e.exec(`SELECT pgforce.resume($1::integer)`, id)
	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM information_schema.columns
			WHERE table_schema = 'salesforce' AND table_name = 'account' AND column_name = 'industry'`) == 1, "no column industry"
	})
	e.waitValue("account", ids[0], "industry", "Energy")
	e.waitState(id, "synced")
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Industry": "Banking"}))
	e.waitValue("account", ids[0], "industry", "Banking")
}

// A Salesforce change the table refuses becomes an inbound error; once the
// cause is fixed, pgforce.retry has the worker read the record again and
// the error is resolved. A retry that fails again opens the error again.
func TestRetryOfAnInboundErrorReadsTheRecordAgainOnceItsCauseIsFixed(t *testing.T) {
	for _, mode := range []string{"cdc", "poll"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			// Only pgforce.retry's notification wakes the re-read in time.
			e.opts.SafetyInterval = time.Minute
			sfid, _, errID := e.refusedEmployeeCount(mode)
			errorState := func() (string, int) {
				var state string
				var attempts int
				require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT state, attempts FROM pgforce.error WHERE id = $1`, errID).Scan(&state, &attempts))
				return state, attempts
			}
			_, before := errorState()

			// Still refused: the same error is open again, one attempt more.
			e.exec(`SELECT pgforce.retry($1)`, errID)
			e.eventually(10*time.Second, func() (bool, string) {
				state, attempts := errorState()
				return state == "open" && attempts == before+1, fmt.Sprint(state, " after ", attempts, " attempts")
			})

			e.exec(`ALTER TABLE salesforce.account DROP CONSTRAINT positive_staff`)
			e.exec(`SELECT pgforce.retry($1)`, errID)
			e.waitValue("account", sfid, "numberofemployees", "-1")
			e.eventually(10*time.Second, func() (bool, string) {
				state, _ := errorState()
				return state == "resolved", state
			})
			require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.error`), "one error row throughout")
		})
	}
}

// A gap overflow makes the worker read again everything changed since its
// watermark. Later events of the same batch move the watermark on before
// that read runs, and the read must still start where the gap did.
func TestAResyncAfterAGapOverflowReadsFromBeforeTheEventsThatFollowedIt(t *testing.T) {
	e := newEnv(t)
	e.opts.Overlap = time.Millisecond
	ids := e.create("Account", map[string]any{"Name": "A"}, map[string]any{"Name": "B"})
	id := e.mapSynced("Account", []string{"Name"}, "cdc")
	e.stop()

	// A change the overflow stands for: its own event is never delivered.
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Name": "in the gap"}))
	evs := e.sim.Events(0, 1<<20)
	e.exec(`UPDATE pgforce.mapping SET cdc_replay_id = $2 WHERE id = $1`, id, fmt.Sprint(evs[len(evs)-1].ReplayID))
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, e.sim.ForceGap("Account", "GAP_OVERFLOW"))
	time.Sleep(5 * time.Millisecond)
	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[1], map[string]any{"Name": "after the gap"}))

	e.start()
	e.waitValue("account", ids[1], "name", "after the gap")
	e.waitValue("account", ids[0], "name", "in the gap")
	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pgforce.mapping WHERE id = $1 AND resync_requested_at IS NULL AND resync_from IS NULL`, id) == 1, "resync still pending"
	})
}

// A record deleted in Salesforce while the initial load reads pages taken
// before the delete ends up deleted in Postgres: the delete event found no
// row yet, and the page wrote the record afterwards.
func TestARecordDeletedWhileTheLoadReadsItEndsUpDeleted(t *testing.T) {
	e := newEnv(t)
	_, err := e.sim.Seed(context.Background(), "Account", 2500, func(i int) map[string]any { return map[string]any{"Name": fmt.Sprint("A", i)} })
	require.NoError(t, err)
	last := e.create("Account", map[string]any{"Name": "Deleted during the load"})[0]
	// The load's later pages come slowly; the first one sets the snapshot.
	e.sim.Inject(sim.Fault{Path: "/services/data/v62.0/query/", Method: "GET", Latency: time.Second})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.start()
	e.eventually(20*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM pg_tables WHERE schemaname = 'salesforce' AND tablename = 'account'`) == 1 &&
			e.count(`SELECT count(*) FROM salesforce.account`) > 0, "no page loaded yet"
	})
	res, err := e.sf.Delete(context.Background(), []string{last})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())

	e.waitState(id, "synced")
	e.eventually(10*time.Second, func() (bool, string) {
		return e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1 AND isdeleted`, last) == 1, "the record is live in Postgres"
	})
	require.Equal(t, 2500, e.count(`SELECT count(*) FROM salesforce.account WHERE NOT isdeleted`))
}

// Under hard_delete, a row that an application table still refers to
// cannot be deleted with its record. That becomes an error of the record,
// the mapping's other changes go on coming in, and pgforce.retry, which
// reads the record again, opens the error again while the row is still
// referred to.
func TestARowWhoseDeletionPostgresRefusesBecomesAnErrorAndTheMappingSyncsOn(t *testing.T) {
	for _, mode := range []string{"cdc", "poll"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			ids := e.create("Account", map[string]any{"Name": "Referred to"})
			id := e.mapping("Account", []string{"Name"}, mode)
			e.exec(`UPDATE pgforce.mapping SET hard_delete = true WHERE id = $1`, id)
			e.start()
			e.waitState(id, "synced")
			e.exec(`CREATE TABLE public.orders (id serial PRIMARY KEY, account_id integer REFERENCES salesforce.account (id))`)
			e.exec(`INSERT INTO public.orders (account_id) SELECT id FROM salesforce.account WHERE sfid = $1`, ids[0])

			_, err := e.sf.Delete(context.Background(), []string{ids[0]})
			require.NoError(t, err)
			errID, _ := e.waitOpenError(ids[0])
			var msg string
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT message FROM pgforce.error WHERE id = $1`, errID).Scan(&msg))
			require.Contains(t, msg, "orders")
			other := e.create("Account", map[string]any{"Name": "Other"})
			e.waitValue("account", other[0], "name", "Other")

			// (A poll reads the record again each time, as the newest
			// change it saw, and counts an attempt.)
			var before int
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT attempts FROM pgforce.error WHERE id = $1`, errID).Scan(&before))
			e.exec(`SELECT pgforce.retry($1)`, errID)
			e.eventually(10*time.Second, func() (bool, string) {
				var state string
				var attempts int
				require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT state, attempts FROM pgforce.error WHERE id = $1`, errID).Scan(&state, &attempts))
				// A poll may reopen it first: the re-read is awaited too.
				queued := e.count(`SELECT count(*) FROM pgforce.inbound_reread`)
				return state == "open" && attempts > before && queued == 0, fmt.Sprint(state, " after ", attempts, " attempts, ", queued, " re-reads queued")
			})
			more := e.create("Account", map[string]any{"Name": "More"})
			e.waitValue("account", more[0], "name", "More")

			e.exec(`DELETE FROM public.orders`)
			e.exec(`SELECT pgforce.retry($1)`, errID)
			e.eventually(10*time.Second, func() (bool, string) {
				n := e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1`, ids[0])
				return n == 0, fmt.Sprint(n, " rows")
			})
		})
	}
}

// A row whose change Salesforce refused keeps the values pgforce.retry is to
// send when a poll reads the unchanged record again (the overlap of every
// poll reads the newest record once more), and takes the rest of the
// record, a field added since too; a change made in Salesforce since
// replaces them all.
func TestAReadOfTheUnchangedRecordKeepsTheValuesOfAFailedRow(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme", "Phone": "555-0100"})
	e.mapSynced("Account", []string{"Name", "Industry"}, "poll")
	e.refuseRename(ids[0])
	e.pollPastRecord()
	require.Equal(t, "Acme Renamed", e.value("account", ids[0], "name"))

	// A field added since is filled in the row all the same.
	e.exec(`UPDATE pgforce.mapping SET fields = fields || '{Phone}' WHERE id = 1`)
	e.eventually(15*time.Second, func() (bool, string) {
		var phone *string
		err := e.pool.QueryRow(context.Background(), `SELECT phone FROM salesforce.account WHERE sfid = $1`, ids[0]).Scan(&phone)
		return err == nil && phone != nil && *phone == "555-0100", fmt.Sprint("phone ", phone, " ", err)
	})
	require.Equal(t, "Acme Renamed", e.value("account", ids[0], "name"))

	require.NoError(t, e.sim.UIEdit(context.Background(), "Account", ids[0], map[string]any{"Industry": "Retail"}))
	e.waitValue("account", ids[0], "industry", "Retail")
	require.Equal(t, "Acme", e.value("account", ids[0], "name"), "a newer record replaces them")
}

// A reload under hard_delete deletes the rows of records gone from
// Salesforce; one that an application table still refers to becomes an
// error of its record, and the reload completes.
func TestAReloadDeletesTheRowsOfGoneRecordsAndReportsOnesItCannot(t *testing.T) {
	e := newEnv(t)
	e.opts.Overlap = time.Millisecond // the records are seconds old
	ids := e.create("Account", map[string]any{"Name": "Referred to"}, map[string]any{"Name": "Free"})
	id := e.mapping("Account", []string{"Name"}, "cdc")
	e.exec(`UPDATE pgforce.mapping SET hard_delete = true WHERE id = $1`, id)
	e.start()
	e.waitState(id, "synced")
	e.exec(`CREATE TABLE public.orders (id serial PRIMARY KEY, account_id integer REFERENCES salesforce.account (id))`)
	e.exec(`INSERT INTO public.orders (account_id) SELECT id FROM salesforce.account WHERE sfid = $1`, ids[0])
	e.stop()

	_, err := e.sf.Delete(context.Background(), ids)
	require.NoError(t, err)
	e.exec(`SELECT pgforce.reload($1::integer)`, id)
	e.start()
	e.eventually(20*time.Second, func() (bool, string) {
		n := e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1`, ids[1])
		return n == 0, fmt.Sprint(n, " rows of the free record")
	})
	e.waitState(id, "synced")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.account WHERE sfid = $1`, ids[0]), "the row referred to stays")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.error WHERE sfid = $1 AND state = 'open'`, ids[0]))
}

// refuseRename leaves account sfid as the outbound side does after
// Salesforce refused its rename to Acme Renamed: FAILED, with an open
// error whose payload names Name.
func (e *env) refuseRename(sfid string) {
	e.t.Helper()
	e.exec(`BEGIN; SET LOCAL pgforce.origin = 'salesforce';
		UPDATE salesforce.account SET name = 'Acme Renamed', _hc_lastop = 'FAILED' WHERE sfid = '` + sfid + `';
		INSERT INTO pgforce.error (mapping_id, direction, operation, record_id, sfid, payload, error_code, message)
		SELECT 1, 'outbound', 'update', id, sfid, jsonb_build_object('Id', sfid, 'Name', name), 'FIELD_CUSTOM_VALIDATION_EXCEPTION', 'no renames'
		FROM salesforce.account WHERE sfid = '` + sfid + `'; COMMIT`)
}

// pollPastRecord lets the polls read a record again while it is the newest
// one, then moves them past it with a newer record.
func (e *env) pollPastRecord() {
	e.t.Helper()
	time.Sleep(5 * e.opts.MaxPollInterval)
	later := e.create("Account", map[string]any{"Name": "Later"})
	e.waitValue("account", later[0], "name", "Later")
	require.NoError(e.t, e.sim.UIEdit(context.Background(), "Account", later[0], map[string]any{"Industry": "Energy"}))
	e.waitValue("account", later[0], "industry", "Energy")
}

// pgforce.ignore keeps the Postgres value, which a read of the unchanged
// record does not replace.
func TestAnIgnoredRefusalKeepsItsValueOverAReadOfTheUnchangedRecord(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	e.mapSynced("Account", []string{"Name", "Industry"}, "poll")
	e.refuseRename(ids[0])
	e.exec(`SELECT pgforce.ignore(id) FROM pgforce.error`)
	e.pollPastRecord()
	require.Equal(t, "Acme Renamed", e.value("account", ids[0], "name"))
}

// With a change of another field of the row still queued, the read goes
// through the two-way rules, which keep the refused value too.
func TestARefusedValueOutlastsAReadWhileAnotherFieldOfTheRowIsQueued(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Account", map[string]any{"Name": "Acme"})
	e.mapSynced("Account", []string{"Name", "Industry"}, "poll")
	e.exec(`UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = 1`)
	e.refuseRename(ids[0])
	e.exec(`UPDATE salesforce.account SET industry = 'Banking' WHERE sfid = $1`, ids[0])
	require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.outbox`))
	e.pollPastRecord()
	require.Equal(t, "Banking", e.value("account", ids[0], "industry"))
	require.Equal(t, "Acme Renamed", e.value("account", ids[0], "name"))
}

// A trigger of the user's that refuses a record's values with RAISE (a
// validation written in PL/pgSQL, as apps on Heroku Connect have) makes
// that record an error, as a constraint does, and the rest of the
// mapping's changes, the load's included, apply.
func TestARecordAUserTriggerRefusesBecomesAnErrorAndTheRestApplies(t *testing.T) {
	for _, mode := range []string{"cdc", "poll"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.create("Account", map[string]any{"Name": "Refused at load", "NumberOfEmployees": -5},
				map[string]any{"Name": "Loaded", "NumberOfEmployees": 5})
			id := e.mapping("Account", []string{"Name", "NumberOfEmployees"}, mode)
			e.exec(`CREATE SCHEMA IF NOT EXISTS salesforce`)
			e.exec(`CREATE TABLE salesforce.account (id serial PRIMARY KEY, name varchar(255), numberofemployees integer)`)
			e.exec(`CREATE FUNCTION public.no_negative_staff() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN
					IF NEW.numberofemployees < 0 THEN
						RAISE EXCEPTION 'staff of % cannot be negative', NEW.name;
					END IF;
					RETURN NEW;
				END $$`)
			e.exec(`CREATE TRIGGER no_negative_staff BEFORE INSERT OR UPDATE ON salesforce.account
				FOR EACH ROW EXECUTE FUNCTION public.no_negative_staff()`)
			e.start()
			e.waitState(id, "synced")
			require.Equal(t, 1, e.count(`SELECT count(*) FROM salesforce.account WHERE name = 'Loaded'`), "the load's other record applied")
			require.Equal(t, 1, e.count(`SELECT count(*) FROM pgforce.error WHERE mapping_id = $1 AND state = 'open' AND message LIKE '%Refused at load cannot be negative%'`, id),
				"the load's refused record is an error")

			ids := e.create("Account", map[string]any{"Name": "Refused later", "NumberOfEmployees": -1},
				map[string]any{"Name": "Applied later", "NumberOfEmployees": 1})
			e.waitValue("account", ids[1], "name", "Applied later")
			e.eventually(10*time.Second, func() (bool, string) {
				n := e.count(`SELECT count(*) FROM pgforce.error WHERE mapping_id = $1 AND sfid = $2 AND state = 'open' AND message LIKE '%cannot be negative%'`, id, ids[0])
				return n == 1, fmt.Sprint(n, " open errors for the refused record")
			})
			st, detail := e.state(id)
			require.Equal(t, "synced", st, detail)
		})
	}
}

// The describe keeps the object's Id prefix with the Id column, which the
// outbound side checks every sfid it sends against.
func TestTheDescribeKeepsTheObjectsIdPrefix(t *testing.T) {
	e := newEnv(t)
	id := e.mapSynced("Account", []string{"Name"}, "poll")
	var prefix string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT c ->> 'keyPrefix' FROM pgforce.mapping m, jsonb_array_elements(m.columns) c
		WHERE m.id = $1 AND c ->> 'name' = 'Id'`, id).Scan(&prefix))
	require.Equal(t, "001", prefix)
}
