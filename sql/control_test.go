package sql_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type statusRow struct {
	Org, Sobject, Schema, Table, Mode, State string
	Paused                                   bool
	Rows, Backlog, OpenErrors                int64
	OldestAge                                *time.Duration
	LastInbound, LastOutbound                *time.Time
}

func (b *testBundle) status(t *testing.T, mappingID int) statusRow {
	t.Helper()
	var s statusRow
	require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT org, sobject, schema_name, table_name, mode, state, paused,
		coalesce(row_count, 0), outbound_backlog, oldest_pending_age, open_errors, last_inbound_at, last_outbound_at
		FROM pgforce.status WHERE mapping_id = $1`, mappingID).Scan(&s.Org, &s.Sobject, &s.Schema, &s.Table, &s.Mode, &s.State,
		&s.Paused, &s.Rows, &s.Backlog, &s.OldestAge, &s.OpenErrors, &s.LastInbound, &s.LastOutbound))
	return s
}

func TestStatusShowsRowsBacklogAndOpenErrorsPerMapping(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	var pending int
	b.scalar(t, &pending, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Contact', '{LastName}') RETURNING id`)

	b.asWorker(t, `INSERT INTO salesforce.account (sfid, name) SELECT '001' || lpad(i::text, 15, '0'), 'a' || i FROM generate_series(1, 5) i`)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('new1'), ('new2')`)
	b.exec(t, `INSERT INTO pgforce.error (mapping_id, direction, operation, message) VALUES ($1, 'inbound', 'poll', 'x'), ($1, 'inbound', 'poll', 'y')`, m)
	b.exec(t, `UPDATE pgforce.error SET state = 'resolved' WHERE message = 'y'`)
	b.exec(t, `UPDATE pgforce.mapping SET last_inbound_at = now() WHERE id = $1`, m)

	s := b.status(t, m)
	require.Equal(t, statusRow{Org: "default", Sobject: "Account", Schema: "salesforce", Table: "account", Mode: "read_write", State: "new",
		Rows: 7, Backlog: 2, OpenErrors: 1, OldestAge: s.OldestAge, LastInbound: s.LastInbound}, s)
	require.NotNil(t, s.OldestAge)
	require.NotNil(t, s.LastInbound)

	// A mapping whose table does not exist yet still has a row.
	p := b.status(t, pending)
	require.Equal(t, "contact", p.Table)
	require.Zero(t, p.Rows)
	require.Zero(t, p.Backlog)
	require.Nil(t, p.OldestAge)
}

func TestPauseAndResumeByIdOrName(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")

	b.exec(t, `SELECT pgforce.pause('Account')`)
	s := b.status(t, m)
	require.True(t, s.Paused)
	require.Equal(t, "paused", s.State)

	// Capture continues while paused: the changes are sent after resume.
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('while paused')`)
	require.Len(t, b.outbox(t), 1)

	b.exec(t, `SELECT pgforce.pause($1::integer)`, m) // pausing twice is harmless
	b.exec(t, `SELECT pgforce.resume($1::integer)`, m)
	s = b.status(t, m)
	require.False(t, s.Paused)
	require.Equal(t, "new", s.State, "a mapping that never loaded starts over")

	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced', inbound_watermark = now() WHERE id = $1`, m)
	b.exec(t, `SELECT pgforce.pause($1::integer)`, m)
	b.exec(t, `SELECT pgforce.resume('account')`)
	require.Equal(t, "synced", b.status(t, m).State, "a loaded mapping resumes where it stopped")
}

func TestReloadForgetsTheInboundPositionButKeepsPendingChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced', inbound_watermark = now(), cdc_replay_id = '42' WHERE id = $1`, m)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('pending')`)

	b.exec(t, `SELECT pgforce.reload($1::integer)`, m)
	var state string
	var watermarkCleared, replayCleared, requested bool
	require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT state, inbound_watermark IS NULL, cdc_replay_id IS NULL, reload_requested_at IS NOT NULL
		FROM pgforce.mapping WHERE id = $1`, m).Scan(&state, &watermarkCleared, &replayCleared, &requested))
	require.Equal(t, "loading", state)
	require.True(t, watermarkCleared)
	require.True(t, replayCleared)
	require.True(t, requested)
	require.Len(t, b.outbox(t), 1)

	b.exec(t, `SELECT pgforce.pause($1::integer)`, m)
	b.refused(t, "is paused", "pgforce.resume", `SELECT pgforce.reload('Account')`)
	b.refused(t, "no mapping with id 99", "pgforce.mapping", `SELECT pgforce.reload(99)`)
	b.refused(t, "'Lead' is not mapped in org 'default'", "pgforce.mapping", `SELECT pgforce.pause('Lead')`)
}

// pgforce.check_drift asks the worker for a drift check and returns its
// id; asked again before the worker starts it, it returns the same one
// (comparing values if either asked). A paused mapping is refused, and the
// schedule has a floor.
func TestCheckDriftQueuesOneCheckAtATimeAndRefusesPausedMappings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_only")
	var first, again, byName int64
	b.scalar(t, &first, `SELECT pgforce.check_drift($1::integer)`, m)
	b.scalar(t, &again, `SELECT pgforce.check_drift($1::integer)`, m)
	b.scalar(t, &byName, `SELECT pgforce.check_drift('Account')`)
	require.Equal(t, first, again)
	require.Equal(t, first, byName)
	// Asked for with compare_values, the waiting check compares values too.
	var compares bool
	b.scalar(t, &compares, `SELECT compare_values FROM pgforce.drift_check WHERE id = $1`, first)
	require.False(t, compares)
	b.scalar(t, &again, `SELECT pgforce.check_drift('Account', compare_values => true)`)
	require.Equal(t, first, again)
	b.scalar(t, &compares, `SELECT compare_values FROM pgforce.drift_check WHERE id = $1`, first)
	require.True(t, compares)
	var who string
	b.scalar(t, &who, `SELECT requested_by FROM pgforce.drift_check WHERE id = $1`, first)
	require.NotEmpty(t, who)

	// None is started while the mapping is not synced (a load would look
	// like drift); once the worker has started it, a new one is queued.
	var none *int64
	b.scalar(t, &none, `SELECT pgforce.drift_check_next($1)`, m)
	require.Nil(t, none)
	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced' WHERE id = $1`, m)
	var started int64
	b.scalar(t, &started, `SELECT pgforce.drift_check_next($1)`, m)
	require.Equal(t, first, started)
	var next int64
	b.scalar(t, &next, `SELECT pgforce.check_drift($1::integer)`, m)
	require.Greater(t, next, first)

	b.exec(t, `SELECT pgforce.pause($1::integer)`, m)
	b.refused(t, "is paused", "pgforce.resume", `SELECT pgforce.check_drift($1::integer)`, m)
	b.refused(t, "drift_check_interval 00:05:00 of Account is below the 10 minute floor", "NULL to check only when you call pgforce.check_drift",
		`UPDATE pgforce.mapping SET drift_check_interval = '5 minutes' WHERE id = $1`, m)
	b.exec(t, `UPDATE pgforce.mapping SET drift_check_interval = NULL WHERE id = $1`, m)
}

// A new mapping says what it waits for until a worker takes it: a worker
// of its org, which a mapping of a second org otherwise waited for with
// nothing to say so.
func TestANewMappingSaysItWaitsForAWorkerOfItsOrg(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('sandbox', 'sandbox')`)
	var main, sandbox string
	b.scalar(t, &main, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Account', '{Name}') RETURNING state_detail`)
	b.scalar(t, &sandbox, `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('sandbox', 'Contact', '{LastName}') RETURNING state_detail`)
	require.Equal(t, "waiting for a worker (pgforce run)", main)
	require.Equal(t, "waiting for a worker of org sandbox (pgforce run with PGFORCE_ORG=sandbox)", sandbox)
	var detail string
	b.scalar(t, &detail, `SELECT state_detail FROM pgforce.status WHERE org = 'sandbox'`)
	require.Equal(t, sandbox, detail)
}

// pgforce.prune_history deletes the org's resolved errors and finished
// drift checks older than its history_retention, a batch at a time, and
// keeps everything else: errors still open, retrying or ignored, recent
// history, each mapping's latest finished check (pgforce.status shows it)
// and checks not finished, and other orgs' history. It also removes the
// ids that interrupted checks and reloads left behind.
func TestPruneHistoryKeepsWhatIsStillInUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('other', 'other_sf')`)
	var other int
	b.scalar(t, &other, `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('other', 'Account', '{Name}') RETURNING id`)
	b.exec(t, `INSERT INTO pgforce.error (mapping_id, direction, operation, message, state, action, resolved_at)
		VALUES ($1, 'outbound', 'update', 'old resolved 1', 'resolved', NULL, now() - interval '40 days'),
		       ($1, 'outbound', 'update', 'old resolved 2', 'resolved', NULL, now() - interval '32 days'),
		       ($1, 'outbound', 'update', 'old resolved 3', 'resolved', NULL, now() - interval '60 days'),
		       ($1, 'outbound', 'update', 'recent resolved', 'resolved', NULL, now() - interval '2 days'),
		       ($1, 'outbound', 'update', 'old ignored', 'ignored', NULL, now() - interval '40 days'),
		       ($1, 'outbound', 'update', 'open', 'open', NULL, NULL),
		       ($1, 'outbound', 'update', 'retrying', 'retrying', 'retry', NULL),
		       ($2, 'outbound', 'update', 'other org resolved', 'resolved', NULL, now() - interval '40 days')`, m, other)
	b.exec(t, `UPDATE pgforce.org SET history_retention = '90 days' WHERE name = 'other'`)
	var oldest, latest, running int64
	b.scalar(t, &oldest, `INSERT INTO pgforce.drift_check (mapping_id, requested_at, started_at, finished_at)
		VALUES ($1, now() - interval '50 days', now() - interval '50 days', now() - interval '50 days') RETURNING id`, m)
	b.exec(t, `INSERT INTO pgforce.drift_check (mapping_id, requested_at, started_at, finished_at)
		VALUES ($1, now() - interval '45 days', now() - interval '45 days', now() - interval '45 days')`, m)
	b.scalar(t, &latest, `INSERT INTO pgforce.drift_check (mapping_id, requested_at, started_at, finished_at)
		VALUES ($1, now() - interval '40 days', now() - interval '40 days', now() - interval '40 days') RETURNING id`, m)
	b.scalar(t, &running, `INSERT INTO pgforce.drift_check (mapping_id, started_at) VALUES ($1, now()) RETURNING id`, m)
	b.exec(t, `INSERT INTO pgforce.drift_seen (check_id, sfid) VALUES ($1, '001A'), ($2, '001B'), (999999, '001C')`, running, oldest)
	b.exec(t, `INSERT INTO pgforce.inbound_seen (mapping_id, sfid) VALUES ($1, '001D'), (999999, '001E')`, m)

	// Two rows a batch: the first call deletes a full batch of errors.
	var n int64
	b.scalar(t, &n, `SELECT pgforce.prune_history('default', 2)`)
	require.Equal(t, int64(2+2+2+1), n, "two errors, two checks, the ids of two stopped checks, one stray reload id")
	b.scalar(t, &n, `SELECT pgforce.prune_history('default', 2)`)
	require.Equal(t, int64(1), n, "the third old resolved error")
	b.scalar(t, &n, `SELECT pgforce.prune_history('default', 2)`)
	require.Zero(t, n)

	var left []string
	b.scalar(t, &left, `SELECT array_agg(message ORDER BY id) FROM pgforce.error`)
	require.Equal(t, []string{"recent resolved", "old ignored", "open", "retrying", "other org resolved"}, left)
	var checks []int64
	b.scalar(t, &checks, `SELECT array_agg(id ORDER BY id) FROM pgforce.drift_check`)
	require.Equal(t, []int64{latest, running}, checks)
	var seen []string
	b.scalar(t, &seen, `SELECT array_agg(sfid ORDER BY sfid) FROM pgforce.drift_seen`)
	require.Equal(t, []string{"001A"}, seen)
	b.scalar(t, &seen, `SELECT array_agg(sfid ORDER BY sfid) FROM pgforce.inbound_seen`)
	require.Equal(t, []string{"001D"}, seen)

	b.exec(t, `UPDATE pgforce.org SET history_retention = NULL`)
	b.scalar(t, &n, `SELECT pgforce.prune_history('other')`)
	require.Zero(t, n, "NULL keeps history for ever")
	b.refused(t, "history_retention 00:10:00 of org default is below the 1 hour floor", "NULL to keep them for ever",
		`UPDATE pgforce.org SET history_retention = '10 minutes' WHERE name = 'default'`)
}
