package sql_test

import (
	"context"
	"fmt"
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

// An org's resume, like a mapping's, stamps resumed_at on the mappings it
// lets run again, which the outbound worker checks its first updates by.
func TestResumingAnOrgStampsResumedAtOnItsMappingsNotPausedOnTheirOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	var held int
	b.scalar(t, &held, `INSERT INTO pgforce.mapping (sobject, fields, mode, paused)
		VALUES ('Contact', '{LastName}', 'read_write', true) RETURNING id`)
	resumed := func(id int) bool {
		var ok bool
		b.scalar(t, &ok, `SELECT resumed_at IS NOT NULL FROM pgforce.mapping WHERE id = $1`, id)
		return ok
	}

	b.exec(t, `UPDATE pgforce.org SET paused = true WHERE name = 'default'`)
	require.False(t, resumed(m), "a pause is no resume")
	b.exec(t, `UPDATE pgforce.org SET api_budget_pct = 40 WHERE name = 'default'`)
	require.False(t, resumed(m), "an edit of a paused org is no resume")
	b.exec(t, `UPDATE pgforce.org SET paused = false WHERE name = 'default'`)
	require.True(t, resumed(m))
	require.False(t, resumed(held), "a mapping paused on its own stays paused")
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

// pgforce.check_drift takes the mapping by id or by sobject (and org), and
// compare_values by position or by name, in every combination. Written
// positionally after a name, check_drift('Account', true) was taken for
// the id form and failed on 'Account' as an integer.
func TestCheckDriftTakesTheMappingByIdOrNameAndCompareValuesByPositionOrName(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_only")
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('other_org', 'other_sf')`)
	var other int
	b.scalar(t, &other, `INSERT INTO pgforce.mapping (org, sobject, fields) VALUES ('other_org', 'Account', '{Name}') RETURNING id`)

	for _, c := range []struct {
		call    string
		mapping int
		values  bool
	}{
		{`pgforce.check_drift('Account')`, m, false},
		{`pgforce.check_drift('Account', true)`, m, true},
		{`pgforce.check_drift('Account', false)`, m, false},
		{`pgforce.check_drift('Account', compare_values => true)`, m, true},
		{`pgforce.check_drift(p_sobject => 'Account')`, m, false},
		{`pgforce.check_drift('Account', 'other_org')`, other, false},
		{`pgforce.check_drift('Account', 'other_org', true)`, other, true},
		{`pgforce.check_drift('Account', p_org => 'other_org')`, other, false},
		{`pgforce.check_drift('Account', p_org => 'other_org', compare_values => true)`, other, true},
		{fmt.Sprintf(`pgforce.check_drift(%d)`, m), m, false},
		{fmt.Sprintf(`pgforce.check_drift(%d, true)`, m), m, true},
		{fmt.Sprintf(`pgforce.check_drift(%d, compare_values => true)`, other), other, true},
	} {
		// Each call queues a check of its own.
		b.exec(t, `DELETE FROM pgforce.drift_check`)
		var id int64
		b.scalar(t, &id, `SELECT `+c.call)
		var mapping int
		var values bool
		b.scalar(t, &mapping, `SELECT mapping_id FROM pgforce.drift_check WHERE id = $1`, id)
		b.scalar(t, &values, `SELECT compare_values FROM pgforce.drift_check WHERE id = $1`, id)
		require.Equal(t, c.mapping, mapping, c.call)
		require.Equal(t, c.values, values, c.call)
	}
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

// The ids that stopped drift checks and reloads of deleted mappings left
// behind go a batch at a time too, like errors and checks: the worker
// calls again while a batch is full, and no one transaction deletes them
// all. The ids of the check and the reload in progress stay.
func TestPruneHistoryDeletesLeftoverIdsABatchAtATime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	var running, stopped int64
	b.scalar(t, &stopped, `INSERT INTO pgforce.drift_check (mapping_id, started_at, finished_at) VALUES ($1, now(), now()) RETURNING id`, m)
	b.scalar(t, &running, `INSERT INTO pgforce.drift_check (mapping_id, started_at) VALUES ($1, now()) RETURNING id`, m)
	b.exec(t, `INSERT INTO pgforce.drift_seen (check_id, sfid)
		VALUES ($1, '001R1'), ($1, '001R2'), ($1, '001R3'), ($2, '001S1'), ($2, '001S2'), ($2, '001S3')`, running, stopped)
	b.exec(t, `INSERT INTO pgforce.inbound_seen (mapping_id, sfid)
		VALUES ($1, '001L1'), ($1, '001L2'), ($1, '001L3'), (999999, '001G1'), (999999, '001G2'), (999999, '001G3')`, m)

	var n int64
	b.scalar(t, &n, `SELECT pgforce.prune_history('default', 2)`)
	require.Equal(t, int64(2+2), n, "two ids of the stopped check, two of the deleted mapping's reload")
	b.scalar(t, &n, `SELECT pgforce.prune_history('default', 2)`)
	require.Equal(t, int64(1+1), n)
	b.scalar(t, &n, `SELECT pgforce.prune_history('default', 2)`)
	require.Zero(t, n)

	var seen []string
	b.scalar(t, &seen, `SELECT array_agg(sfid ORDER BY sfid) FROM pgforce.drift_seen`)
	require.Equal(t, []string{"001R1", "001R2", "001R3"}, seen)
	b.scalar(t, &seen, `SELECT array_agg(sfid ORDER BY sfid) FROM pgforce.inbound_seen`)
	require.Equal(t, []string{"001L1", "001L2", "001L3"}, seen)
}

// The worker prunes every hour, usually a few expired rows among the many
// it keeps: open and recently resolved errors, recent drift checks, and
// the ids that a check and a reload in progress have read, millions for a
// large object. A run reads about what it deletes; it read every row of
// those tables, the errors once per mapping of the org.
func TestPruneHistoryReadsAboutWhatItDeletesNotWhatItKeeps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	var contact int
	b.scalar(t, &contact, `INSERT INTO pgforce.mapping (sobject, fields) VALUES ('Contact', '{LastName}') RETURNING id`)
	b.exec(t, `INSERT INTO pgforce.error (mapping_id, direction, operation, message, state, resolved_at)
		SELECT CASE WHEN i % 4 < 2 THEN $1::integer ELSE $2::integer END, 'outbound', 'update', 'refused',
		       CASE WHEN i % 2 = 0 THEN 'open' ELSE 'resolved' END, CASE WHEN i % 2 = 1 THEN now() - interval '1 day' END
		FROM generate_series(1, 10000) i`, m, contact)
	b.exec(t, `INSERT INTO pgforce.error (mapping_id, direction, operation, message, state, resolved_at)
		SELECT $1, 'outbound', 'update', 'expired', 'resolved', now() - interval '40 days' FROM generate_series(1, 3)`, m)
	b.exec(t, `INSERT INTO pgforce.drift_check (mapping_id, requested_at, started_at, finished_at)
		SELECT $1, t, t, t FROM generate_series(4559, 0, -1) i, LATERAL (SELECT now() - interval '5 minutes' - i * interval '10 minutes') AS c(t)`,
		m) // every ten minutes for 31 days and 16 hours: 96 expired
	var running int64
	b.scalar(t, &running, `INSERT INTO pgforce.drift_check (mapping_id, started_at) VALUES ($1, now()) RETURNING id`, m)
	b.exec(t, `INSERT INTO pgforce.drift_seen (check_id, sfid) SELECT $1, '001' || i FROM generate_series(1, 10000) i`, running)
	b.exec(t, `INSERT INTO pgforce.drift_seen (check_id, sfid) VALUES (999999, '001A'), (999999, '001B')`) // a check gone since
	b.exec(t, `INSERT INTO pgforce.inbound_seen (mapping_id, sfid) SELECT $1, '001' || i FROM generate_series(1, 10000) i`, m)
	b.exec(t, `INSERT INTO pgforce.inbound_seen (mapping_id, sfid) VALUES (999999, '001C'), (999999, '001D')`)
	b.exec(t, `ANALYZE pgforce.error, pgforce.drift_check, pgforce.drift_seen, pgforce.inbound_seen, pgforce.mapping`)

	ctx := context.Background()
	tx, err := b.conn.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	// Rows read from the table, by scans and through indexes. Counted
	// from here: the view also holds counts of earlier transactions of
	// the session that Postgres has not yet flushed.
	tables := []string{"pgforce.error", "pgforce.drift_check", "pgforce.drift_seen", "pgforce.inbound_seen"}
	read := func() map[string]int64 {
		out := map[string]int64{}
		for _, table := range tables {
			var n int64
			require.NoError(t, tx.QueryRow(ctx, `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
				FROM pg_stat_xact_user_tables WHERE relid = $1::regclass`, table).Scan(&n))
			out[table] = n
		}
		return out
	}
	before := read()
	var n int64
	require.NoError(t, tx.QueryRow(ctx, `SELECT pgforce.prune_history('default')`).Scan(&n))
	require.Equal(t, int64(3+96+2+2), n, "three errors, 96 checks, the ids of a stopped check and of a deleted mapping's reload")
	after := read()
	// A few rows a row deleted: a check deleted is read, probed for
	// the latest checks of its mapping and looked up by id.
	deleted := map[string]int64{"pgforce.error": 3, "pgforce.drift_check": 96, "pgforce.drift_seen": 2, "pgforce.inbound_seen": 2}
	for _, table := range tables {
		require.LessOrEqual(t, after[table]-before[table], 10*deleted[table]+20, "rows of %s read to delete %d of them", table, deleted[table])
	}
}

// The worker records each failed attempt it retries; pgforce.status shows
// since when the mapping fails (the first failure of either direction) and
// the latest failure of each, until an attempt works.
func TestStatusShowsSinceWhenAndWhyTheWorkerRetriesAFailingSync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	failing := func() (since *time.Time, failure *string) {
		require.NoError(t, b.conn.QueryRow(t.Context(), `SELECT failing_since, failure FROM pgforce.status WHERE mapping_id = $1`, m).Scan(&since, &failure))
		return since, failure
	}
	since, failure := failing()
	require.Nil(t, since)
	require.Nil(t, failure)

	b.exec(t, `SELECT pgforce._sync_failed($1, 'inbound', 'HTTP 503 SERVER_UNAVAILABLE')`, m)
	first, _ := failing()
	require.NotNil(t, first)
	b.exec(t, `SELECT pgforce._sync_failed($1, 'inbound', 'HTTP 401 INVALID_SESSION_ID')`, m)
	b.exec(t, `SELECT pgforce._sync_failed($1, 'outbound', 'HTTP 401 INVALID_SESSION_ID')`, m)
	since, failure = failing()
	require.Equal(t, *first, *since, "the first failure's time")
	require.Regexp(t, `^inbound: HTTP 401 INVALID_SESSION_ID \(2 attempts since [^)]+\); outbound: HTTP 401 INVALID_SESSION_ID \(1 attempt since [^)]+\)$`, *failure)

	// Nothing is tried while paused, nor written from a read_only mapping:
	// what failed before is not shown as failing now.
	b.exec(t, `SELECT pgforce.pause($1::integer)`, m)
	since, _ = failing()
	require.Nil(t, since)
	b.exec(t, `SELECT pgforce.resume($1::integer)`, m)
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_only' WHERE id = $1`, m)
	_, failure = failing()
	require.Regexp(t, `^inbound: [^;]*$`, *failure)
	b.exec(t, `UPDATE pgforce.mapping SET mode = 'read_write' WHERE id = $1`, m)

	b.exec(t, `SELECT pgforce._sync_recovered($1, 'inbound')`, m)
	since, failure = failing()
	require.NotNil(t, since)
	require.Regexp(t, `^outbound: `, *failure)
	b.exec(t, `SELECT pgforce._sync_recovered($1, 'outbound')`, m)
	since, failure = failing()
	require.Nil(t, since)
	require.Nil(t, failure)

	// A failure recorded as its mapping is deleted goes with it.
	b.exec(t, `SELECT pgforce._sync_failed($1, 'outbound', 'x')`, m)
	b.exec(t, `DELETE FROM pgforce.mapping WHERE id = $1`, m)
	b.exec(t, `SELECT pgforce._sync_failed($1, 'outbound', 'x')`, m)
	var n int
	b.scalar(t, &n, `SELECT count(*) FROM pgforce.sync_failure`)
	require.Zero(t, n)
}

// status names the worker that holds a mapping's lease, and nobody once the
// lease has run out: a stopped worker left the mapping saying 'synced'.
func TestStatusNamesTheWorkerRunningAMappingUntilItsLeaseRunsOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.mapAccount(t, "read_write")
	worker := func() *string {
		var w *string
		b.scalar(t, &w, `SELECT worker FROM pgforce.status WHERE mapping_id = $1`, m)
		return w
	}
	require.Nil(t, worker())
	var ok bool
	b.scalar(t, &ok, `SELECT pgforce.inbound_claim($1, 'host-1-4242-ab12', '1 minute')`, m)
	require.True(t, ok)
	require.NotNil(t, worker())
	require.Equal(t, "host-1-4242-ab12", *worker())
	b.exec(t, `SELECT pgforce.inbound_release($1, 'host-1-4242-ab12')`, m)
	require.Nil(t, worker())
	b.scalar(t, &ok, `SELECT pgforce.inbound_claim($1, 'host-1-4242-ab12', '1 millisecond')`, m)
	require.True(t, ok)
	time.Sleep(10 * time.Millisecond)
	require.Nil(t, worker(), "a lease that ran out names nobody")
}
