package inbound

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgforce/pgforce/worker/mappings"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/txretry"
)

// table applies Salesforce records to one mapped table.
//
// Full records (loads, polls, re-reads) go through a staging table: they
// are COPied into a temporary table of text columns and merged into the
// mapped table with one INSERT … ON CONFLICT (sfid) per batch, casting each
// column in SQL so that numbers, datetimes and dates convert exactly as
// Postgres parses them. A batch that fails on some value is split in halves
// under savepoints until the bad records are isolated; those become
// pgforce.error rows and the rest of the batch applies.
//
// Every write is idempotent by SystemModstamp: a record older than the row
// already stored is skipped, so replays after a crash, overlapping polls and
// a load racing change events all converge on the newest version.
type table struct {
	m      *mappings.Mapping
	cols   []mappings.Column // system columns first, in systemFields order
	target string            // quoted schema.table
	stage  string            // temp table name (unquoted)
	upsert string            // merges stage rows $1..$2
	// mark marks, before the merge, the stage rows $1..$2 that it will
	// insert as echoes (see markEchoes); empty unless me is set.
	mark string
	// direct is set while loading into a table that was empty when the load
	// began: batches are COPied straight into it, skipping the stage.
	direct atomic.Bool
	// seen is set during a reload: every staged id is recorded in
	// pgforce.inbound_seen so that rows not read can be marked deleted.
	seen atomic.Bool
	// twoWay says the batch of change events being applied goes through
	// the two-way rules (see twoWayNow).
	twoWay atomic.Bool
	// me is the Salesforce user the worker acts as, set on read_write
	// mappings: their reads also fetch CreatedById (the stage's last
	// column, createdBy), and a new row for a record me created while an
	// insert of the mapping may have been sent is marked as its echo (see
	// markEchoes).
	me string
	// byExternalID gives the stage's records the rows that have no sfid
	// yet and hold their upsert_field value (see adoptByExternalID); empty
	// unless the mapping is read_write with an upsert_field.
	byExternalID string
	// deleted is the SQL that says stage row s is a deleted record:
	// "false" for objects that are never deleted, only deactivated (User,
	// RecordType), which have no IsDeleted and whose table's isdeleted
	// stays false.
	deleted string
	// extName, extCol and extCast are the upsert_field's column, quoted,
	// and the cast of its text value.
	extName, extCol, extCast string
	// rereadQueued is set when applying queued records to be read again
	// (see queueReread, leaveWritten); the runner wakes the re-reads once
	// the transaction has committed (see wakeRereads).
	rereadQueued atomic.Bool
}

// adoptByExternalID makes the row of a record found by its upsert_field the
// record's row. An application inserts rows without sfid; the worker
// upserts them by that field, and the record's create event (or a read)
// can arrive before the Id is written back. A new row for it then broke
// the unique index that a table kept from Heroku Connect has on its
// external id (hcu_idx_<table>_<field>), which left an error for every such
// insert; without the index it made a second row for the worker to merge
// away. The row found keeps its queued changes (the merge that follows
// leaves their fields alone) and takes the rest from Salesforce; the
// result of its upsert writes the same Id back. Only a row that no other
// row without sfid shares the value with is taken (which of two would be
// a guess, and giving both the Id broke the unique index on sfid, failing
// the whole batch); and never by a deleted record (%[5]s), which an upsert
// does not match either: a poll reads those too, and the application's new
// row was marked deleted with it, or deleted under hard_delete.
const adoptByExternalID = `UPDATE %[1]s t SET sfid = s.sfid FROM %[2]s s
WHERE s._n BETWEEN $1 AND $2 AND t.sfid IS NULL AND s.%[3]s IS NOT NULL AND t.%[3]s = s.%[3]s%[4]s%[5]s
  AND NOT EXISTS (SELECT FROM %[1]s x WHERE x.sfid = s.sfid)
  AND NOT EXISTS (SELECT FROM %[1]s y WHERE y.sfid IS NULL AND y.%[3]s = t.%[3]s AND y.id <> t.id)`

// createdBy is the stage column, after the mapped ones, holding
// CreatedById on mappings that mark echoes. No column derived from an API
// name starts with an underscore.
const createdBy = "_created_by"

// markEchoes marks, in pgforce.outbound_echo_row, the rows a read_write
// mapping's merge is about to insert for records our user created, as
// echoes of our own creates: the insert sent again after its answer was
// lost may take them over (see findCreated in worker/outbound). A change
// event says which creates are ours (cdc.go); a read says only who created
// the record, so it marks just records created since the first claim of
// an insert of the mapping that may have been sent, less the outbound
// side's minute for clock skew. It runs before the merge, in its savepoint:
// joined to the merge's RETURNING, the stage (a temporary table, never
// analyzed) was read once per merged row, 11 s for 10,000 records.
const markEchoes = `
INSERT INTO pgforce.outbound_echo_row (mapping_id, sfid)
SELECT $3, s.sfid FROM %s s
WHERE s._n BETWEEN $1 AND $2 AND s.` + createdBy + ` = $4
  AND s.createddate::timestamptz >= (SELECT min(o.sent_from) FROM pgforce.outbox o
                                     WHERE o.mapping_id = $3 AND o.op = 'insert' AND o.sfid IS NULL) - interval '1 minute'
  AND NOT EXISTS (SELECT FROM %s t WHERE t.sfid = s.sfid)
ON CONFLICT DO NOTHING`

// twoWayNow reports whether Salesforce's changes must go through the
// two-way rules (pgforce.inbound_filter): always for a read_write mapping,
// and for a read_only one while changes captured when it was read_write
// are still queued, which the outbound side still sends (a Salesforce edit
// that came after them must not be overwritten by them).
func (t *table) twoWayNow(ctx context.Context, q pgx.Tx) (bool, error) {
	if t.m.Mode == "read_write" {
		return true, nil
	}
	var queued bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $1)`, t.m.ID).Scan(&queued)
	return queued, err
}

// settledStatus is the SET clause of an inbound write that stamps a
// PENDING row SYNCED once nothing of it is queued for Salesforce any more
// (the outbound result, or a merge that dropped the queued change, settled
// it); the status trigger leaves PENDING and FAILED rows as they are on a
// worker write that does not say so. %[1]s is the row's alias, %[2]s the
// mapping id.
const settledStatus = `_hc_lastop = CASE WHEN %[1]s._hc_lastop = 'PENDING' AND NOT EXISTS (SELECT FROM pgforce.outbox o
	WHERE o.mapping_id = %[2]d AND o.record_id = %[1]s.id) THEN 'SYNCED' ELSE %[1]s._hc_lastop END`

// keepRefused sets column %[1]s (quoted; %[2]s unquoted) from a record
// merged, except in a FAILED row whose refused change named the field
// (pgforce._refused_fields), when the record's version is older than the
// refusal (a poll's overlap, a reload, our own insert read back): the row
// holds what pgforce.retry sends once it is fixed, or what pgforce.ignore
// keeps, and an older version replaced it with Salesforce's, so that the
// retry sent that back and the change was lost. Only FAILED rows look
// their errors up.
const keepRefused = `%[1]s = CASE WHEN t._hc_lastop = 'FAILED'
	AND '%[2]s' = ANY (pgforce._refused_fields(%[3]d, t.id, EXCLUDED.systemmodstamp::timestamptz)) THEN t.%[1]s ELSE EXCLUDED.%[1]s END`

// pgColumn is the mapped table's column for a Salesforce field.
func pgColumn(field string) string {
	if strings.EqualFold(field, "Id") {
		return "sfid"
	}
	return strings.ToLower(field)
}

// castSuffix converts a text value to the column's base type. Text columns
// are not cast: assigning an over-long text to varchar(n) is an error,
// whereas an explicit cast would silently truncate it.
func castSuffix(sfType string) string {
	switch sfType {
	case "currency", "percent", "double", "int", "long":
		return "::numeric"
	case "datetime":
		return "::timestamptz"
	case "date":
		return "::date"
	case "time":
		return "::time"
	case "boolean":
		return "::boolean"
	}
	return ""
}

// newTable prepares the merge of m's records; me is the Salesforce user the
// worker acts as.
func newTable(m *mappings.Mapping, me string) (*table, error) {
	if len(m.Columns) == 0 {
		return nil, fmt.Errorf("inbound: mapping %d (%s) has not been described yet", m.ID, m.SObject)
	}
	t := &table{m: m, target: m.Table(), deleted: "false"}
	if m.Mode == "read_write" {
		t.me = me
	}
	for _, name := range systemFields {
		c, ok := m.Column(name)
		if !ok && name == "IsDeleted" {
			continue
		}
		if !ok {
			return nil, fmt.Errorf("inbound: columns of mapping %d lack %s", m.ID, name)
		}
		if name == "IsDeleted" {
			t.deleted = "coalesce(s.isdeleted::boolean, false)"
		}
		t.cols = append(t.cols, c)
	}
	for _, c := range m.Columns {
		if !isSystem(c.Name) {
			t.cols = append(t.cols, c)
		}
	}
	h := sha1.New()
	var names, sels, sets []string
	for _, c := range t.cols {
		col := pgColumn(c.Name)
		fmt.Fprintf(h, "%s:%s;", col, c.Type)
		names = append(names, pgx.Identifier{col}.Sanitize())
		sel := "s." + pgx.Identifier{col}.Sanitize() + castSuffix(c.Type)
		if col == "isdeleted" {
			sel = "coalesce(" + sel + ", false)"
		}
		sels = append(sels, sel)
		switch {
		case col == "sfid":
		case isSystem(c.Name):
			sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%[1]s", pgx.Identifier{col}.Sanitize()))
		default:
			// A column added since (a reload fills it) takes the record's value.
			sets = append(sets, fmt.Sprintf(keepRefused, pgx.Identifier{col}.Sanitize(), strings.ReplaceAll(col, "'", "''"), m.ID))
		}
	}
	if t.me != "" {
		fmt.Fprintf(h, "%s;", createdBy)
	}
	t.stage = fmt.Sprintf("pgforce_stage_%d_%s", m.ID, hex.EncodeToString(h.Sum(nil))[:10])
	stage := pgx.Identifier{t.stage}.Sanitize()
	sets = append(sets, fmt.Sprintf(settledStatus, "t", m.ID))
	// A deleted record (a poll, a resync or a re-read reads those too)
	// makes no row: one the application deleted, with its record, came back
	// marked deleted, under a new id, at the next poll.
	live := fmt.Sprintf(" AND (NOT %s OR EXISTS (SELECT FROM %s x WHERE x.sfid = s.sfid))", t.deleted, t.target)
	// Nor does a record whose row the application deleted, with the delete
	// still waiting to be sent: a reload, or the re-read of an edit made in
	// Salesforce meanwhile, brought the row back under a new id, for the
	// application to see until the delete went out (for ever while the
	// mapping was paused), and left it behind marked deleted after that.
	// NOT IN is planned as one hashed subplan per statement.
	live += fmt.Sprintf(` AND (s.sfid NOT IN (SELECT ob.sfid::text FROM pgforce.outbox ob WHERE ob.mapping_id = %d AND ob.op = 'delete' AND ob.sfid IS NOT NULL)
		OR EXISTS (SELECT FROM %s x WHERE x.sfid = s.sfid))`, m.ID, t.target)
	// Nor does a record noted as written or deleted since the read began
	// ($3, see pgforce.inbound_read). leaveWritten has taken most of these
	// out and queued them; this catches a deleted record (no row to lock)
	// noted after it looked, and, for a mapping that is not two-way, every
	// one (leaveWritten looks after the merge there).
	live += " AND NOT " + writtenSince(m.ID, "s.sfid", "$3")
	t.upsert = fmt.Sprintf(`INSERT INTO %s AS t (%s) SELECT %s FROM %s s WHERE s._n BETWEEN $1 AND $2`+live+`
ON CONFLICT (sfid) DO UPDATE SET %s
WHERE t.systemmodstamp IS NULL OR EXCLUDED.systemmodstamp IS NULL OR EXCLUDED.systemmodstamp >= t.systemmodstamp`,
		t.target, strings.Join(names, ", "), strings.Join(sels, ", "), stage, strings.Join(sets, ", "))
	if t.me != "" {
		t.mark = fmt.Sprintf(markEchoes, stage, t.target)
	}
	if m.Mode == "read_write" && m.UpsertField != "" {
		if c, ok := m.Column(m.UpsertField); ok {
			t.extName = pgColumn(c.Name)
			t.extCol, t.extCast = pgx.Identifier{t.extName}.Sanitize(), castSuffix(c.Type)
			t.byExternalID = fmt.Sprintf(adoptByExternalID, t.target, stage, t.extCol, t.extCast, " AND NOT "+t.deleted)
		}
	}
	return t, nil
}

// stageColumns are the COPY columns: _n (position in the batch), one text
// column per mapped column, and createdBy where echoes are marked.
func (t *table) stageColumns() []string {
	out := []string{"_n"}
	for _, c := range t.cols {
		out = append(out, pgColumn(c.Name))
	}
	if t.me != "" {
		out = append(out, createdBy)
	}
	return out
}

func (t *table) createStage(ctx context.Context, tx pgx.Tx) error {
	var defs []string
	for _, c := range t.stageColumns()[1:] {
		defs = append(defs, pgx.Identifier{c}.Sanitize()+" text")
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE IF NOT EXISTS %s (_n bigint, %s) ON COMMIT DELETE ROWS`,
		pgx.Identifier{t.stage}.Sanitize(), strings.Join(defs, ", ")))
	return err
}

// fields are the Salesforce names to SELECT, in stage column order.
func (t *table) fields() []string {
	out := make([]string, len(t.cols), len(t.cols)+1)
	for i, c := range t.cols {
		out[i] = c.Name
	}
	if t.me != "" {
		out = append(out, "CreatedById")
	}
	return out
}

// soql reads the fields the stage takes (see fields).
func (t *table) soql(where string) string {
	return t.soqlOf(t.fields(), where)
}

// storedSOQL reads only the fields the table stores, in column order, for
// a COPY straight into it.
func (t *table) storedSOQL(where string) string {
	return t.soqlOf(t.fields()[:len(t.cols)], where)
}

func (t *table) soqlOf(fields []string, where string) string {
	q := "SELECT " + strings.Join(fields, ", ") + " FROM " + t.m.SObject
	if where != "" {
		q += " WHERE " + where
	}
	return q
}

// textValue renders a decoded JSON value as the text Postgres parses; nil
// for null. Salesforce stores empty text as null, and Bulk results cannot
// tell the two apart, so "" is null everywhere.
func textValue(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if x == "" {
			return nil
		}
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// recordRow turns a REST record into a staging row (without _n).
func (t *table) recordRow(r *salesforce.Record) []any {
	fields := t.fields()
	row := make([]any, len(fields))
	for i, f := range fields {
		v, _ := r.Get(f)
		row[i] = textValue(v)
	}
	return row
}

// csvRows turns Bulk CSV rows into staging rows; idx caches the column
// positions of one page header.
type csvIndex struct {
	header *salesforce.Header
	pos    []int
}

func (t *table) csvRow(ix *csvIndex, r salesforce.Row) []any {
	if ix.header != r.Header {
		ix.header = r.Header
		fields := t.fields()
		ix.pos = make([]int, len(fields))
		for i, f := range fields {
			ix.pos[i] = r.Header.Index(f)
		}
	}
	row := make([]any, len(ix.pos))
	for i, p := range ix.pos {
		if p >= 0 && p < len(r.Values) && r.Values[p] != "" {
			row[i] = r.Values[p]
		}
	}
	return row
}

// beginApply opens a transaction whose writes capture ignores and whose
// mapping bookkeeping wakes no watcher.
func beginApply(ctx context.Context, pool *pgxpool.Pool) (pgx.Tx, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT pgforce._as_worker(), set_config('pgforce.lease', 'on', true)`); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

// giveWay makes the rest of tx wait at most txretry.LockTimeout for any
// lock: the application locks rows in no particular order, and a
// transaction that applies many records must not deadlock with it (it
// fails with 55P03 instead, and is run again).
func giveWay(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, txretry.LockTimeout)
	return err
}

// applyRowsTx merges whole records, from a read that began at since (see
// wholeRead), into the table.
func (t *table) applyRowsTx(ctx context.Context, tx pgx.Tx, rows [][]any, operation string, since time.Time) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	if t.direct.Load() {
		ok, err := t.copyDirect(ctx, tx, rows, since)
		if err != nil {
			return 0, err
		}
		if ok {
			return 0, nil
		}
	}
	return t.applyRowsStaged(ctx, tx, rows, operation, since)
}

// applyRowsStaged merges rows through the staging table.
func (t *table) applyRowsStaged(ctx context.Context, tx pgx.Tx, rows [][]any, operation string, since time.Time) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	if err := t.createStage(ctx, tx); err != nil {
		return 0, fmt.Errorf("inbound: staging table for %s: %w", t.m.SObject, err)
	}
	n := int64(0)
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if int(n) >= len(rows) {
			return nil, nil
		}
		r := rows[n]
		n++
		return append([]any{n}, r...), nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.stage}, t.stageColumns(), src); err != nil {
		return 0, fmt.Errorf("inbound: COPY into staging for %s: %w", t.m.SObject, err)
	}
	if t.seen.Load() {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO pgforce.inbound_seen (mapping_id, sfid) SELECT $1, sfid FROM %s`,
			pgx.Identifier{t.stage}.Sanitize()), t.m.ID); err != nil {
			return 0, err
		}
	}
	if t.byExternalID != "" {
		if _, err := tx.Exec(ctx, t.byExternalID, 1, int64(len(rows))); err != nil {
			return 0, fmt.Errorf("inbound: find the rows of %s by %s: %w", t.target, t.m.UpsertField, err)
		}
	}
	twoWay, err := t.filterPending(ctx, tx, since)
	if err != nil {
		return 0, fmt.Errorf("inbound: merge pending changes of %s: %w", t.target, err)
	}
	failed, err := t.upsertRange(ctx, tx, 1, int64(len(rows)), operation, since)
	if err != nil {
		return 0, err
	}
	if !twoWay {
		// filterPending left nothing out: the merge refused the records
		// pgforce wrote since the read began (a read_only mapping still
		// sends what it queued, see twoWayNow), and they are read again.
		// Looked for after the merge, every one it refused is found.
		if err := t.leaveWritten(ctx, tx, since); err != nil {
			return 0, err
		}
	}
	if t.m.HardDelete {
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT s.sfid FROM %s s WHERE %s`, pgx.Identifier{t.stage}.Sanitize(), t.deleted))
		if err != nil {
			return 0, err
		}
		gone, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, err
		}
		if err := t.markGone(ctx, tx, gone, operation); err != nil {
			return 0, err
		}
	}
	// After markGone: a deletion it could not store opened its error again.
	if err := t.resolveApplied(ctx, tx); err != nil {
		return 0, err
	}
	return failed, nil
}

// resolveApplied resolves the open inbound errors of the staged records
// that this merge stored whole (a poll, a reload, a resync read the whole
// record): the worker saw them go through, and their errors stayed open in
// pgforce.status after the user had fixed the cause, until a retry. An
// error this transaction opened (the record failed again) is newer than
// the transaction's start and stays open; so does a conflict, which is
// pgforce.resolve's to settle.
func (t *table) resolveApplied(ctx context.Context, tx pgx.Tx) error {
	var open bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.error e WHERE e.mapping_id = $1 AND e.state = 'open'
		AND e.direction = 'inbound' AND e.sfid IS NOT NULL AND e.error_code IS DISTINCT FROM 'CONFLICT' AND e.updated_at < now())`, t.m.ID).Scan(&open); err != nil || !open {
		return err
	}
	stamp := "s.systemmodstamp"
	if c, ok := t.m.Column("SystemModstamp"); ok {
		stamp += castSuffix(c.Type)
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE pgforce.error e SET state = 'resolved'
		FROM %s s, %s t
		WHERE e.mapping_id = $1 AND e.state = 'open' AND e.direction = 'inbound' AND e.error_code IS DISTINCT FROM 'CONFLICT'
		  AND e.updated_at < now() AND e.sfid = s.sfid AND t.sfid = s.sfid AND t.systemmodstamp = %s`,
		pgx.Identifier{t.stage}.Sanitize(), t.target, stamp), t.m.ID)
	return err
}

// isRecordError reports whether err is about the data of some record
// (a value that does not fit its column, a constraint the user added, a
// trigger of theirs that refuses the values with RAISE) rather than about
// the database or the connection. A RAISE (class P0) failed the whole
// load or poll, again on every attempt, for the one record a validation
// trigger refused. Class 27 is a trigger changing a row the statement
// changes too; 44 a view's CHECK OPTION.
func isRecordError(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	if len(pg.Code) < 2 {
		return false
	}
	switch pg.Code[:2] {
	case "22", "23", "27", "44", "P0":
		return true
	}
	return false
}

// upsertRange merges stage rows lo..hi, of a read that began at since,
// isolating bad records by halving.
func (t *table) upsertRange(ctx context.Context, tx pgx.Tx, lo, hi int64, operation string, since time.Time) (int, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, err
	}
	if t.mark != "" {
		_, err = sp.Exec(ctx, t.mark, lo, hi, t.m.ID, t.me)
	}
	if err == nil {
		_, err = sp.Exec(ctx, t.upsert, lo, hi, since)
	}
	if err == nil {
		return 0, sp.Commit(ctx)
	}
	if rbErr := sp.Rollback(ctx); rbErr != nil {
		return 0, rbErr
	}
	if !isRecordError(err) {
		return 0, fmt.Errorf("inbound: merge into %s: %w", t.target, err)
	}
	if lo == hi {
		return 1, t.recordFailure(ctx, tx, lo, operation, err)
	}
	mid := lo + (hi-lo)/2
	a, err := t.upsertRange(ctx, tx, lo, mid, operation, since)
	if err != nil {
		return 0, err
	}
	b, err := t.upsertRange(ctx, tx, mid+1, hi, operation, since)
	return a + b, err
}

// markGone applies the deletion in Salesforce of the records ids that a
// read found gone: their rows are flagged isdeleted, or deleted under
// hard_delete. A row Postgres refuses to change (an application's foreign
// key still names a row to delete) becomes an inbound error of its record,
// and the others go through: one such row failed the whole read, again on
// every attempt, and no change of the mapping came in meanwhile.
func (t *table) markGone(ctx context.Context, tx pgx.Tx, ids []string, operation string) error {
	if len(ids) == 0 {
		return nil
	}
	q := fmt.Sprintf(`UPDATE %s SET isdeleted = true WHERE sfid = ANY($1) AND NOT isdeleted`, t.target)
	if t.m.HardDelete {
		q = fmt.Sprintf(`DELETE FROM %s WHERE sfid = ANY($1)`, t.target)
	}
	apply := func(ids []string) error {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, q, ids); err != nil {
			if rbErr := sp.Rollback(ctx); rbErr != nil {
				return rbErr
			}
			return err
		}
		return sp.Commit(ctx)
	}
	err := apply(ids)
	if err == nil || !isRecordError(err) {
		return err
	}
	for _, id := range ids {
		err := apply([]string{id})
		if err == nil {
			continue
		}
		if !isRecordError(err) {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pgforce.inbound_error($1, $2, $3, $4, $5, $6, $7)`,
			t.m.ID, operation, id, map[string]any{"changeType": "DELETE"}, pgCode(err),
			fmt.Sprintf("cannot store the deletion of %s in %s: %s", id, t.target, pgMessage(err)), pgColumns(err)); err != nil {
			return err
		}
	}
	return nil
}

// recordFailure turns staging row n into a pgforce.error row.
func (t *table) recordFailure(ctx context.Context, tx pgx.Tx, n int64, operation string, cause error) error {
	var pg *pgconn.PgError
	errors.As(cause, &pg)
	msg := pg.Message
	if pg.Detail != "" {
		msg += " (" + pg.Detail + ")"
	}
	msg += widenHint(cause)
	var fields []string
	if pg.ColumnName != "" {
		fields = append(fields, pg.ColumnName)
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`SELECT pgforce.inbound_error($1, $2, s.sfid, to_jsonb(s) - '{_n,_created_by}'::text[], $3, $4, $5)
FROM %s s WHERE s._n = $6`, pgx.Identifier{t.stage}.Sanitize()),
		t.m.ID, operation, "PG"+pg.Code,
		fmt.Sprintf("cannot store the Salesforce record in %s: %s", t.target, msg), fields, n)
	return err
}

// advance records inbound progress in the same transaction as the changes.
func (t *table) advance(ctx context.Context, tx pgx.Tx, watermark *time.Time, replayID string) error {
	_, err := tx.Exec(ctx, `UPDATE pgforce.mapping SET
		inbound_watermark = CASE WHEN $2::timestamptz IS NULL THEN inbound_watermark ELSE greatest(inbound_watermark, $2::timestamptz) END,
		cdc_replay_id = coalesce(nullif($3, ''), cdc_replay_id),
		last_inbound_at = now()
		WHERE id = $1`, t.m.ID, watermark, replayID)
	return err
}

func pgCode(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return "PG" + pg.Code
	}
	return ""
}

func pgMessage(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if pg.Detail != "" {
			return pg.Message + " (" + pg.Detail + ")" + widenHint(err)
		}
		return pg.Message + widenHint(err)
	}
	return err.Error()
}

func pgColumns(err error) []string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.ColumnName != "" {
		return []string{pg.ColumnName}
	}
	return nil
}

// filterPending applies, one by one, the staged records whose rows have
// Postgres changes waiting to go to Salesforce (see twoWayNow):
// pgforce.inbound_filter decides which Salesforce values may overwrite
// them (field-level merge and the mapping's conflict policy), and the
// records are then removed from the stage so the set-based merge skips
// them. Rows without pending changes, the vast majority, are untouched.
// It reports whether the mapping is two-way now (see twoWayNow); only
// then does it leave out the records written since the read began.
func (t *table) filterPending(ctx context.Context, tx pgx.Tx, since time.Time) (bool, error) {
	if twoWay, err := t.twoWayNow(ctx, tx); err != nil || !twoWay {
		return false, err
	}
	// The rows are locked first, in id order as the outbound worker locks
	// them, and their queued changes looked for by the next statement: an
	// application's update that commits while the merge waits for its row
	// is then seen with its change. Looked for before, the change was not
	// there yet, and the merge wrote Salesforce's value over the user's.
	// The rows of inserts in flight are locked too: the outbound worker
	// writes their new Ids back meanwhile, and a row that got its Id after
	// this lock was merged into unlocked, unchecked, over a change the
	// application made to it in between (its retry then sent Salesforce's
	// value back). Held here, the write-back waits, and the record makes a
	// row of its own that the write-back then adopts (see
	// pgforce._outbound_adopt_echo_rows).
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT FROM %s t WHERE t.sfid IN (SELECT s.sfid FROM %s s)
		OR t.id IN (SELECT o.record_id FROM pgforce.outbox o WHERE o.mapping_id = $1 AND o.op = 'insert' AND o.sfid IS NULL AND o.claimed_at IS NOT NULL)
		ORDER BY t.id FOR UPDATE OF t`,
		t.target, pgx.Identifier{t.stage}.Sanitize()), t.m.ID); err != nil {
		return true, err
	}
	if err := t.leaveWritten(ctx, tx, since); err != nil {
		return true, err
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT s._n, t.id, s.sfid, to_jsonb(s) - '{_n,sfid,systemmodstamp,isdeleted,createddate,_created_by}'::text[],
		s.systemmodstamp::timestamptz, %s
FROM %s s JOIN %s t ON t.sfid = s.sfid
WHERE EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $1 AND o.record_id = t.id)`,
		t.deleted, pgx.Identifier{t.stage}.Sanitize(), t.target), t.m.ID)
	if err != nil {
		return true, err
	}
	type pending struct {
		n       int64
		id      int
		sfid    string
		values  map[string]any
		at      *time.Time
		deleted bool
	}
	var list []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.n, &p.id, &p.sfid, &p.values, &p.at, &p.deleted); err != nil {
			rows.Close()
			return true, err
		}
		list = append(list, p)
	}
	if err := rows.Err(); err != nil {
		return true, err
	}
	for _, p := range list {
		if p.deleted && t.m.HardDelete {
			// Deleted in Salesforce: the row goes with the stage's other
			// deleted records, after the merge, and its queued changes
			// find no row to send.
			continue
		}
		// A staged record is the whole record, every field whether
		// Salesforce changed it or not.
		if err := t.writeFiltered(ctx, tx, p.id, p.values, p.at, false, true, &p.deleted); err != nil {
			return true, err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE _n = $1`, pgx.Identifier{t.stage}.Sanitize()), p.n); err != nil {
			return true, err
		}
	}
	return true, nil
}

// leaveWritten takes out of the stage the records the outbound worker
// wrote or deleted since the read that brought them began (see
// pgforce.inbound_read): the read may have reached them before the write,
// and then holds what the write replaced. They are queued to be read
// again. It runs with the staged rows locked: the outcome of a write of
// one being recorded meanwhile has been waited for, and is seen. A record
// deleted has no row to lock: the merge's statement looks for the notes
// again (see t.upsert).
func (t *table) leaveWritten(ctx context.Context, tx pgx.Tx, since time.Time) error {
	tag, err := tx.Exec(ctx, fmt.Sprintf(`WITH left_out AS (
			DELETE FROM %s s WHERE %s
			RETURNING s.sfid)
		INSERT INTO pgforce.inbound_reread (mapping_id, sfid) SELECT DISTINCT $1::integer, l.sfid FROM left_out l
		ON CONFLICT (mapping_id, sfid) DO UPDATE SET queued_at = now()`, pgx.Identifier{t.stage}.Sanitize(), writtenSince(t.m.ID, "s.sfid", "$2")), t.m.ID, since)
	if err != nil {
		return fmt.Errorf("leave out records written since the read began: %w", err)
	}
	if tag.RowsAffected() > 0 {
		t.rereadQueued.Store(true)
	}
	return nil
}

// writeFiltered writes the values of one existing row that inbound_filter
// lets through; at is the Salesforce commit time, echo whether the change
// is pgforce's own write coming back. whole says values is the whole record
// read from Salesforce rather than the fields a change event says changed:
// inbound_filter must not take all of those for Salesforce edits, since
// they are mostly what Salesforce already had.
func (t *table) writeFiltered(ctx context.Context, tx pgx.Tx, rowID int, values map[string]any, at *time.Time, echo, whole bool, deleted *bool) error {
	var allowed map[string]any
	if err := tx.QueryRow(ctx, `SELECT pgforce.inbound_filter($1, $2, $3, $4, $5, $6)`, t.m.ID, rowID, values, at, echo, whole).Scan(&allowed); err != nil {
		return err
	}
	sets := []string{"systemmodstamp = coalesce($2, systemmodstamp)", fmt.Sprintf(settledStatus, "t", t.m.ID)}
	args := []any{rowID, at}
	if deleted != nil {
		args = append(args, *deleted)
		sets = append(sets, fmt.Sprintf("isdeleted = $%d", len(args)))
	}
	for _, c := range t.cols {
		col := pgColumn(c.Name)
		v, ok := allowed[col]
		if !ok || isSystem(c.Name) {
			continue
		}
		args = append(args, textValue(v))
		sets = append(sets, fmt.Sprintf("%s = $%d::text%s", pgx.Identifier{col}.Sanitize(), len(args), castSuffix(c.Type)))
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s t SET %s WHERE id = $1 AND (systemmodstamp IS NULL OR $2::timestamptz IS NULL OR systemmodstamp <= $2)`,
		t.target, strings.Join(sets, ", ")), args...)
	return err
}

// copyDirect COPies rows straight into the mapped table, the fast path of
// a load into an empty table: Postgres parses every value with its input
// function, exactly as the staged casts do. Any failure (a row a change
// event inserted meanwhile, a value that does not fit) rolls the attempt
// back and reports ok=false, and the batch takes the staged path, which
// merges by SystemModstamp and isolates bad records. So does a batch with
// a record deleted meanwhile (see copiedWritten), of a read that began at
// since.
func (t *table) copyDirect(ctx context.Context, tx pgx.Tx, rows [][]any, since time.Time) (ok bool, err error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	rec := make([]string, len(t.cols))
	deleted := slices.IndexFunc(t.cols, func(c mappings.Column) bool { return strings.EqualFold(c.Name, "IsDeleted") })
	for _, row := range rows {
		for i, v := range row[:len(rec)] { // CreatedById, last, is not stored
			if s, isStr := v.(string); isStr {
				rec[i] = s
			} else {
				rec[i] = ""
			}
		}
		if deleted >= 0 && rec[deleted] == "" {
			rec[deleted] = "false"
		}
		if err := w.Write(rec); err != nil {
			return false, err
		}
	}
	w.Flush()
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = pgx.Identifier{pgColumn(c.Name)}.Sanitize()
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, err
	}
	_, err = sp.Conn().PgConn().CopyFrom(ctx, &buf, fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT csv)", t.target, strings.Join(names, ", ")))
	if err == nil {
		ids := make([]string, 0, len(rows))
		for _, row := range rows {
			if id, isStr := row[0].(string); isStr {
				ids = append(ids, id)
			}
		}
		var written bool
		if written, err = t.copiedWritten(ctx, sp, since, ids); err == nil && !written {
			return true, sp.Commit(ctx)
		}
	}
	if rbErr := sp.Rollback(ctx); rbErr != nil {
		return false, rbErr
	}
	if isRecordError(err) {
		return false, nil
	}
	return false, err
}

// copiedWritten reports whether records a direct load just COPied (ids,
// the Id column; nil: any of the mapping's) include one whose row the
// application deleted, its delete still queued, or one the outbound worker
// wrote or deleted since the read began at since (see
// pgforce.inbound_read): the read may have reached it before the delete.
// COPY makes no such checks (see live in newTable), and the record came
// back as a row. Asked after the COPY, in its transaction: a delete's
// outcome, recorded meanwhile, takes its entry and notes the record at
// once, so one or the other is seen.
func (t *table) copiedWritten(ctx context.Context, tx pgx.Tx, since time.Time, ids []string) (bool, error) {
	var written bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.outbound_written w
			WHERE w.mapping_id = $1 AND w.written_at >= $2 AND ($3::text[] IS NULL OR w.sfid = ANY ($3)))
		OR EXISTS (SELECT FROM pgforce.outbox o
			WHERE o.mapping_id = $1 AND o.op = 'delete' AND o.sfid IS NOT NULL AND ($3::text[] IS NULL OR o.sfid::text = ANY ($3)))`,
		t.m.ID, since, ids).Scan(&written)
	return written, err
}

// widenHint tells how to take in a value too long or too large for its
// column, which a field lengthened in Salesforce since the describe gives.
func widenHint(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (pg.Code == "22001" || pg.Code == "22003") {
		return "; if Salesforce's field was made longer or given more digits, pgforce.retry of this error widens the column and reads the record again"
	}
	return ""
}

// writtenSince is the SQL condition that the record whose Id is the
// expression sfid was noted as written or deleted by pgforce at or after
// the expression since, the start of a read (see pgforce.inbound_read).
func writtenSince(mappingID int, sfid, since string) string {
	return fmt.Sprintf(`EXISTS (SELECT FROM pgforce.outbound_written w WHERE w.mapping_id = %d AND w.sfid = %s AND w.written_at >= %s)`, mappingID, sfid, since)
}

// wholeRead is a read of whole records from Salesforce (a poll, a
// re-read, a resync, a load), registered in pgforce.inbound_read before
// its first request: while it is, the outbound worker notes the rows it
// writes, and the read leaves out the records written since it started
// (see leaveWritten).
type wholeRead struct {
	id      int64
	started time.Time
}
