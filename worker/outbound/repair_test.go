package outbound_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/syncbuf"
	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// The repair functions of pgforce.error (retry, ignore, revert) as the
// worker carries them out.

// waitOpenError waits for the open outbound error of account row id about
// op and returns its id.
func (b *bundle) waitOpenError(t *testing.T, id int, op string) int64 {
	t.Helper()
	var errID int64
	eventually(t, 10*time.Second, op+" error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error
			WHERE record_id = $1 AND state = 'open' AND operation = $2 AND direction = 'outbound'`, id, op).Scan(&errID) == nil
	})
	return errID
}

// refusedRenameOfContact has Salesforce refuse (a 400 for the whole call)
// the update of Contact row's lastname to 'Jones', and returns its error.
func (b *bundle) refusedRenameOfContact(t *testing.T, row int) (errID int64) {
	t.Helper()
	b.sim.Inject(sim.Fault{Path: collectionsPath, Method: "PATCH", Status: 400, Count: 1})
	b.exec(t, `UPDATE salesforce.contact SET lastname = 'Jones' WHERE id = $1`, row)
	eventually(t, 10*time.Second, "the refused update's error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE mapping_id = $1 AND record_id = $2 AND state = 'open'`,
			b.contactID, row).Scan(&errID) == nil
	})
	return errID
}

// syncContactsWithTheirName maps Contact both ways with Name, which
// Salesforce makes of FirstName and LastName and does not let be set,
// described by the real inbound worker (Account paused), and starts the
// outbound worker.
func (b *bundle) syncContactsWithTheirName(t *testing.T) {
	t.Helper()
	b.exec(t, `UPDATE pgforce.mapping SET fields = '{FirstName,LastName,Name,Email}', state = 'new' WHERE id = $1`, b.contactID)
	b.exec(t, `UPDATE pgforce.mapping SET paused = true WHERE id = $1`, b.accountID)
	b.startInbound(t)
	b.waitMappingSynced(t, b.contactID)
	b.start(t, fastOptions())
}

// errorState is the state of error id.
func (b *bundle) errorState(t *testing.T, id int64) string {
	t.Helper()
	var state string
	b.scalar(t, &state, `SELECT state FROM pgforce.error WHERE id = $1`, id)
	return state
}

// failedUpdate syncs a new account row, has Salesforce refuse an update of
// it, and returns the row and the error.
func (b *bundle) failedUpdate(t *testing.T) (row int, sfid string, errID int64) {
	t.Helper()
	b.scalar(t, &row, `INSERT INTO salesforce.account (name, industry) VALUES ('Keep me', 'Energy') RETURNING id`)
	sfid = b.waitSfid(t, "account", row)
	b.exec(t, `UPDATE salesforce.account SET name = 'BAD rename' WHERE id = $1`, row)
	return row, sfid, b.waitOpenError(t, row, "update")
}

// A refused update's error keeps what the update replaced in the row, the
// values Salesforce still holds, for its retry (see pgforce.retry).
func TestARefusedUpdatesErrorKeepsTheValuesItReplaced(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	_, _, errID := b.failedUpdate(t)
	var old map[string]any
	b.scalar(t, &old, `SELECT old FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, map[string]any{"name": "Keep me"}, old)
}

// A revert that Postgres refuses (an application table still refers to the
// row of the failed insert it would delete) opens its error again with the
// reason, and the mapping's other changes go on being sent.
func TestARevertPostgresRefusesReopensItsErrorAndTheMappingSyncsOn(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	var bad int
	b.scalar(t, &bad, `INSERT INTO salesforce.account (name) VALUES ('BAD insert') RETURNING id`)
	errID := b.waitOpenError(t, bad, "insert")
	b.exec(t, `CREATE TABLE public.orders (id serial PRIMARY KEY, account_id integer REFERENCES salesforce.account (id))`)
	b.exec(t, `INSERT INTO public.orders (account_id) VALUES ($1)`, bad)

	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "the revert's error open again", func() bool { return b.errorState(t, errID) == "open" })
	var msg string
	b.scalar(t, &msg, `SELECT message FROM pgforce.error WHERE id = $1`, errID)
	require.Contains(t, msg, "orders", "the message names what refused the revert")
	require.Contains(t, msg, "Name must not start with BAD", "and keeps Salesforce's")

	var good int
	b.scalar(t, &good, `INSERT INTO salesforce.account (name) VALUES ('Good after') RETURNING id`)
	b.waitSfid(t, "account", good)

	// Fixed, the revert goes through, and a second failure's message does
	// not pile up.
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "the revert's error open again", func() bool { return b.errorState(t, errID) == "open" })
	b.scalar(t, &msg, `SELECT message FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, 1, strings.Count(msg, "could not revert"), msg)
	b.exec(t, `DELETE FROM public.orders`)
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "the revert carried out", func() bool { return b.errorState(t, errID) == "resolved" })
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account WHERE id = $1`, bad)
	require.Zero(t, rows, "the row of the failed insert is gone")
}

// failingRetrieve fails the next calls of Retrieve that left counts with a
// 503, as Salesforce answers when briefly unavailable.
type failingRetrieve struct {
	*salesforce.Client
	left *atomic.Int32
}

func (f failingRetrieve) Retrieve(ctx context.Context, sobject string, ids, fields []string) ([]*salesforce.Record, error) {
	if f.left.Add(-1) >= 0 {
		return nil, &salesforce.APIError{HTTPStatus: 503, ErrorCode: "SERVER_UNAVAILABLE", Message: "try again"}
	}
	return f.Client.Retrieve(ctx, sobject, ids, fields)
}

// A revert whose read of the record fails once is carried out after the
// backoff, without waiting for some other change to wake the worker.
func TestARevertThatMeetsAPassingFailureIsCarriedOutAfterTheBackoff(t *testing.T) {
	b := setup(t, setupOptions{})
	left := &atomic.Int32{}
	b.startWithClient(t, failingRetrieve{Client: b.sf, left: left}, fastOptions())
	_, _, errID := b.failedUpdate(t)

	left.Store(1)
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 5*time.Second, "the revert carried out", func() bool { return b.errorState(t, errID) == "resolved" })
	require.Equal(t, int32(-1), left.Load(), "the first read failed, the second went through")
}

// A row deleted after its update failed: reverting the update leaves the
// delete queued, so the record goes too.
func TestRevertingAFailedUpdateOfADeletedRowStillDeletesItsRecord(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	row, sfid, errID := b.failedUpdate(t)

	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	b.exec(t, `DELETE FROM salesforce.account WHERE id = $1`, row)
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	b.exec(t, `SELECT pgforce.resume($1::integer)`, b.accountID)

	eventually(t, 10*time.Second, "the revert carried out", func() bool { return b.errorState(t, errID) == "resolved" })
	eventually(t, 10*time.Second, "the outbox drained", func() bool { return b.backlog(t) == 0 })
	require.Empty(t, b.sfRecords(t, "SELECT Id FROM Account WHERE Id = '"+sfid+"'"), "the record was deleted")
}

// A change made after pgforce.revert was called is a new change: the
// revert restores the other fields and the change is sent.
func TestAChangeMadeAfterARevertWasCalledIsKeptAndSent(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	row, sfid, errID := b.failedUpdate(t)

	b.exec(t, `SELECT pgforce.pause($1::integer)`, b.accountID)
	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Retail' WHERE id = $1`, row)
	b.exec(t, `SELECT pgforce.resume($1::integer)`, b.accountID)

	eventually(t, 10*time.Second, "the revert carried out", func() bool { return b.errorState(t, errID) == "resolved" })
	eventually(t, 10*time.Second, "the outbox drained", func() bool { return b.backlog(t) == 0 })
	var name, industry, lastop string
	b.scalar(t, &name, `SELECT name FROM salesforce.account WHERE id = $1`, row)
	b.scalar(t, &industry, `SELECT industry FROM salesforce.account WHERE id = $1`, row)
	require.Equal(t, "Keep me", name, "the refused name was reverted")
	require.Equal(t, "Retail", industry, "the later change stays in the row")
	eventually(t, 10*time.Second, "the row synced", func() bool {
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, row)
		return lastop == "SYNCED"
	})
	require.Equal(t, "Retail", b.sfField(t, "Account", sfid, "Industry"), "and reached Salesforce")
}

// On a mapping that deletes the rows of deleted records, reverting an
// update of a record deleted in Salesforce meanwhile deletes the row.
func TestRevertingAnUpdateOfARecordSalesforceDeletedDropsTheRowUnderHardDelete(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `UPDATE pgforce.mapping SET hard_delete = true WHERE id = $1`, b.accountID)
	b.start(t, fastOptions())
	row, sfid, errID := b.failedUpdate(t)
	_, err := b.sf.Delete(context.Background(), []string{sfid})
	require.NoError(t, err)

	b.exec(t, `SELECT pgforce.revert($1)`, errID)
	eventually(t, 10*time.Second, "the revert carried out", func() bool { return b.errorState(t, errID) == "resolved" })
	var rows int
	b.scalar(t, &rows, `SELECT count(*) FROM salesforce.account WHERE id = $1`, row)
	require.Zero(t, rows)
}

// heldUpdates holds every Update call while hold is set, until release is
// closed.
type heldUpdates struct {
	*salesforce.Client
	hold    *atomic.Bool
	release chan struct{}
}

func (h heldUpdates) Update(ctx context.Context, recs []salesforce.Record) ([]salesforce.SaveResult, error) {
	if h.hold.Load() {
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Client.Update(ctx, recs)
}

// startHeld starts a worker whose updates wait while the returned hold is
// set, until the returned function lets them go.
func (b *bundle) startHeld(t *testing.T) (*atomic.Bool, func()) {
	t.Helper()
	h := heldUpdates{Client: b.sf, hold: &atomic.Bool{}, release: make(chan struct{})}
	b.startWithClient(t, h, fastOptions())
	var once atomic.Bool
	return h.hold, func() {
		if once.CompareAndSwap(false, true) {
			h.hold.Store(false)
			close(h.release)
		}
	}
}

// A retry asked for while a later update of the same row is in flight:
// that update fails for the same field, and its error of its own goes with
// the retry, so that both the fixed field and the later change reach
// Salesforce. (Folded into the retry's error, the later change was settled
// with the retry, which did not carry it.)
func TestALaterUpdateThatFailsWhileARetryWaitsReachesSalesforceWithIt(t *testing.T) {
	b := setup(t, setupOptions{})
	hold, release := b.startHeld(t)
	defer release()
	row, sfid, errID := b.failedUpdate(t)

	hold.Store(true)
	b.exec(t, `UPDATE salesforce.account SET industry = 'Retail' WHERE id = $1`, row)
	b.waitClaimed(t, row) // carries the refused name too, so it fails
	b.exec(t, `UPDATE salesforce.account SET name = 'Fixed' WHERE id = $1`, row)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	release()

	eventually(t, 10*time.Second, "the row synced", func() bool {
		var lastop string
		b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.account WHERE id = $1`, row)
		return lastop == "SYNCED" && b.backlog(t) == 0
	})
	require.Equal(t, "Fixed", b.sfField(t, "Account", sfid, "Name"))
	require.Equal(t, "Retail", b.sfField(t, "Account", sfid, "Industry"))
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE record_id = $1 AND state IN ('open', 'retrying')`, row)
	require.Zero(t, open)
}

// An error ignored while its retry is in flight stays ignored when the
// retry fails: the user gave the change up.
func TestAnErrorIgnoredWhileItsRetryIsInFlightDoesNotComeBack(t *testing.T) {
	b := setup(t, setupOptions{})
	hold, release := b.startHeld(t)
	defer release()
	row, _, errID := b.failedUpdate(t)

	hold.Store(true)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	b.waitClaimed(t, row)
	b.exec(t, `SELECT pgforce.ignore($1)`, errID)
	release()

	eventually(t, 10*time.Second, "the outbox drained", func() bool { return b.backlog(t) == 0 })
	var open int
	b.scalar(t, &open, `SELECT count(*) FROM pgforce.error WHERE record_id = $1 AND state <> 'ignored'`, row)
	require.Zero(t, open)
}

// A child that names its parent by external id waits while the parent's
// insert is queued. Once that insert has failed, the child is sent by
// external id all the same: Salesforce refuses it with an error of its own,
// which a retry settles once the parent is synced.
func TestAChildOfAParentWhoseInsertFailedGetsAnErrorOfItsOwn(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	var parent, child int
	tx, err := b.pool.Begin(context.Background())
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(context.Background(), `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('BAD Parent', 'ext-1') RETURNING id`).Scan(&parent))
	require.NoError(t, tx.QueryRow(context.Background(), `INSERT INTO salesforce.contact (lastname, account__r__ext_id__c) VALUES ('Child', 'ext-1') RETURNING id`).Scan(&child))
	require.NoError(t, tx.Commit(context.Background()))
	parentErr := b.waitOpenError(t, parent, "insert")
	b.exec(t, `SELECT pgforce.ignore($1)`, parentErr)

	var childErr int64
	eventually(t, 10*time.Second, "the child's error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error
			WHERE mapping_id = $1 AND record_id = $2 AND state = 'open'`, b.contactID, child).Scan(&childErr) == nil
	})
	var msg, lastop string
	b.scalar(t, &msg, `SELECT message FROM pgforce.error WHERE id = $1`, childErr)
	require.Contains(t, msg, "ext-1", "Salesforce names the parent it did not find")
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.contact WHERE id = $1`, child)
	require.Equal(t, "FAILED", lastop)

	// The parent fixed and synced, a retry of the child goes through.
	b.exec(t, `UPDATE salesforce.account SET name = 'Good Parent' WHERE id = $1`, parent)
	parentID := b.waitSfid(t, "account", parent)
	b.exec(t, `SELECT pgforce.retry($1)`, childErr)
	childID := b.waitSfid(t, "contact", child)
	require.Equal(t, parentID, b.sfField(t, "Contact", childID, "AccountId"))
}

// A retry sends the row as it is, but only the fields Salesforce lets an
// update set, as the inbound side's describe records them: a person's Name
// is derived from FirstName and LastName, and sending it failed the retry,
// and every later change of the record with it.
// The create event of an insert, our own write coming back, arrives after
// a later update of the row was refused: it wrote the inserted value over
// the refused one in the FAILED row, and the retry sent that back, losing
// the change. (The inbound worker is stopped meanwhile, so that the event
// waits in the stream.)
func TestTheEchoOfAnInsertArrivingAfterARefusedUpdateKeepsTheRefusedValue(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `UPDATE pgforce.mapping SET state = 'new' WHERE id = $1`, b.contactID)
	b.exec(t, `UPDATE pgforce.mapping SET paused = true WHERE id = $1`, b.accountID)
	stop := b.runInbound(t)
	b.waitMappingSynced(t, b.contactID)
	stop()
	b.start(t, fastOptions())
	var row int
	b.scalar(t, &row, `INSERT INTO salesforce.contact (lastname, email) VALUES ('Smith', 'jo@example.com') RETURNING id`)
	sfid := b.waitSfid(t, "contact", row)
	errID := b.refusedRenameOfContact(t, row)

	b.startInbound(t)
	eventually(t, 10*time.Second, "the create event applied", func() bool {
		var stamped bool
		b.scalar(t, &stamped, `SELECT systemmodstamp IS NOT NULL FROM salesforce.contact WHERE id = $1`, row)
		return stamped
	})
	var lastname string
	b.scalar(t, &lastname, `SELECT lastname FROM salesforce.contact WHERE id = $1`, row)
	require.Equal(t, "Jones", lastname, "the refused value stays for the retry")
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	eventually(t, 10*time.Second, "the retry went through", func() bool { return b.errorState(t, errID) == "resolved" })
	require.Equal(t, "Jones", b.sfField(t, "Contact", sfid, "LastName"))
}

func TestARetrySendsNoFieldSalesforceDoesNotLetItSet(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncContactsWithTheirName(t)
	var row int
	b.scalar(t, &row, `INSERT INTO salesforce.contact (firstname, lastname, email) VALUES ('Jo', 'Smith', 'jo@example.com') RETURNING id`)
	sfid := b.waitSfid(t, "contact", row)

	errID := b.refusedRenameOfContact(t, row)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	eventually(t, 10*time.Second, "the retry went through", func() bool { return b.errorState(t, errID) == "resolved" })
	require.Equal(t, "Jones", b.sfField(t, "Contact", sfid, "LastName"))
}

// Writes held because pgforce has used its share of the org's API calls
// say so in the log, with the figures and what to change.
func TestWritesHeldByTheAPIBudgetSaySoInTheLog(t *testing.T) {
	b := setup(t, setupOptions{})
	var used atomic.Int64
	used.Store(60_000)
	opts := fastOptions()
	opts.Budget = budget.New(func() (int, int) { return int(used.Load()), 100_000 }, 50)
	opts.Budget.SetProbe(nil, 100*time.Millisecond) // look at the usage again soon
	var logs syncbuf.Buffer
	b.startWithLog(t, opts, slog.New(slog.NewTextHandler(&logs, nil)))
	var row int
	b.scalar(t, &row, `INSERT INTO salesforce.account (name) VALUES ('Held') RETURNING id`)
	eventually(t, 10*time.Second, "the hold logged", func() bool { return strings.Contains(logs.String(), "writes held") })
	require.Contains(t, logs.String(), "60000 of 100000 daily calls used")
	require.Contains(t, logs.String(), "api_budget_pct")
	require.Empty(t, b.rowSfid(t, "account", row))

	used.Store(1_000) // the calls of a day ago age out
	b.waitSfid(t, "account", row)
}

// refusedLink syncs a parent account (ext-1) and a child contact, then has
// Salesforce refuse the update that renames the child and links it through
// its relationship column; it returns the parent's and the child's Ids, the
// child's row and the error.
func (b *bundle) refusedLink(t *testing.T) (accID, conID string, con int, errID int64) {
	t.Helper()
	var acc int
	b.scalar(t, &acc, `INSERT INTO salesforce.account (name, ext_id__c) VALUES ('Parent Co', 'ext-1') RETURNING id`)
	accID = b.waitSfid(t, "account", acc)
	b.scalar(t, &con, `INSERT INTO salesforce.contact (lastname) VALUES ('Child') RETURNING id`)
	conID = b.waitSfid(t, "contact", con)

	b.sim.Inject(sim.Fault{Path: collectionsPath, Method: "PATCH", Status: 400, Count: 1})
	b.exec(t, `UPDATE salesforce.contact SET account__r__ext_id__c = 'ext-1', lastname = 'Child Linked' WHERE id = $1`, con)
	eventually(t, 10*time.Second, "the refused update's error", func() bool {
		return b.pool.QueryRow(context.Background(), `SELECT id FROM pgforce.error WHERE mapping_id = $1 AND record_id = $2 AND state = 'open'`,
			b.contactID, con).Scan(&errID) == nil
	})
	return accID, conID, con, errID
}

// A refused change that linked a child to its parent through the
// relationship column (the worker sent the parent's Id as AccountId) is
// retried with the columns it set, the relationship column among them, so
// that the retry links the child.
func TestARetryOfARefusedLinkToAParentLinksTheChild(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	accID, conID, _, errID := b.refusedLink(t)
	b.exec(t, `SELECT pgforce.retry($1)`, errID)
	eventually(t, 10*time.Second, "the retry went through", func() bool { return b.errorState(t, errID) == "resolved" })
	require.Equal(t, "Child Linked", b.sfField(t, "Contact", conID, "LastName"))
	require.Equal(t, accID, b.sfField(t, "Contact", conID, "AccountId"))
}

// A retry sent together with a later update of the row and refused again
// reopens its error with that update's fields too, and with the values
// that update replaced: the next retry carries them all.
func TestARetryRefusedAgainKeepsTheValuesEveryChangeSentWithItReplaced(t *testing.T) {
	b := setup(t, setupOptions{})
	b.start(t, fastOptions())
	row, _, errID := b.failedUpdate(t)
	b.exec(t, fmt.Sprintf(`BEGIN; SELECT pgforce.retry(%d); UPDATE salesforce.account SET industry = 'Retail' WHERE id = %d; COMMIT`, errID, row))
	var payload map[string]any
	eventually(t, 10*time.Second, "the retry refused again", func() bool {
		var state string
		var attempts int
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT state, attempts, payload FROM pgforce.error WHERE id = $1`, errID).Scan(&state, &attempts, &payload))
		return state == "open" && attempts > 1
	})
	require.Contains(t, payload, "Industry", "the later change went with the retry")
	var old map[string]any
	b.scalar(t, &old, `SELECT old FROM pgforce.error WHERE id = $1`, errID)
	require.Equal(t, map[string]any{"name": "Keep me", "industry": "Energy"}, old)
}

// A refused link through the relationship column, then an update of another
// field of the row (no retry): the update sends the refused columns again,
// the relationship column among them, and the child ends up linked.
func TestALaterUpdateCarriesARefusedLinkToAParent(t *testing.T) {
	b := setup(t, setupOptions{upsertField: "Ext_Id__c"})
	b.start(t, fastOptions())
	accID, conID, con, errID := b.refusedLink(t)
	b.exec(t, `UPDATE salesforce.contact SET email = 'c@example.com' WHERE id = $1`, con)
	eventually(t, 10*time.Second, "the error settled", func() bool { return b.errorState(t, errID) == "resolved" })
	require.Equal(t, "c@example.com", b.sfField(t, "Contact", conID, "Email"))
	require.Equal(t, "Child Linked", b.sfField(t, "Contact", conID, "LastName"))
	require.Equal(t, accID, b.sfField(t, "Contact", conID, "AccountId"))
}

// A change of a field Salesforce does not let the integration user set (a
// Contact's Name, which Salesforce makes of its parts) was left out of
// what was sent: the row said SYNCED while the record kept its own value.
// It fails its record with Salesforce's error for such a field, before
// anything is sent, and the rest of the batch goes through.
func TestAChangeOfAFieldSalesforceDoesNotLetBeSetFailsItsRecord(t *testing.T) {
	b := setup(t, setupOptions{})
	b.syncContactsWithTheirName(t)
	var row, other int
	b.scalar(t, &row, `INSERT INTO salesforce.contact (firstname, lastname) VALUES ('Jo', 'Smith') RETURNING id`)
	b.scalar(t, &other, `INSERT INTO salesforce.contact (firstname, lastname) VALUES ('Al', 'Jones') RETURNING id`)
	sfid := b.waitSfid(t, "contact", row)
	otherSfid := b.waitSfid(t, "contact", other)

	b.exec(t, `UPDATE salesforce.contact SET name = 'Joanna Smith' WHERE id = $1`, row)
	b.exec(t, `UPDATE salesforce.contact SET email = 'al@example.com' WHERE id = $1`, other)
	errID := b.waitOpenError(t, row, "update")
	var code, lastop string
	b.scalar(t, &code, `SELECT error_code FROM pgforce.error WHERE id = $1`, errID)
	b.scalar(t, &lastop, `SELECT _hc_lastop FROM salesforce.contact WHERE id = $1`, row)
	require.Equal(t, "INVALID_FIELD_FOR_INSERT_UPDATE", code)
	require.Equal(t, "FAILED", lastop)
	require.Equal(t, "Jo Smith", b.sfField(t, "Contact", sfid, "Name"))
	eventually(t, 10*time.Second, "the other change of the batch sent", func() bool {
		return b.sfField(t, "Contact", otherSfid, "Email") == "al@example.com"
	})
}
