package inbound

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/worker/mappings"
	"github.com/pgforce/pgforce/worker/salesforce/streaming"
)

// ChangeEventChannel is the CometD channel of an object's change events:
// /data/AccountChangeEvent, /data/Invoice__ChangeEvent.
func ChangeEventChannel(sobject string) string {
	return "/data/" + ChangeEventName(sobject)
}

// ChangeEventName is the change event entity global describe lists when
// CDC is enabled for the object.
func ChangeEventName(sobject string) string {
	if base, ok := strings.CutSuffix(sobject, "__c"); ok {
		return base + "__ChangeEvent"
	}
	return sobject + "ChangeEvent"
}

// applyEventsTx applies a batch of change events in tx and stores the
// replay id of the last one with them. Each record is applied under its
// own savepoint so that one that cannot be stored becomes an error row and
// the others still apply.
func (r *runner) applyEventsTx(ctx context.Context, tx pgx.Tx, t *table, evs []*streaming.Event) error {
	if err := lockRows(ctx, tx, t, evs); err != nil {
		return err
	}
	twoWay, err := t.twoWayNow(ctx, tx)
	if err != nil {
		return err
	}
	t.twoWay.Store(twoWay)
	var wm *time.Time
	for _, ev := range evs {
		at, err := r.applyEventTx(ctx, tx, t, ev)
		if err != nil {
			return err
		}
		if at != nil && (wm == nil || at.After(*wm)) {
			wm = at
		}
	}
	last := evs[len(evs)-1]
	return t.advance(ctx, tx, wm, strconv.FormatInt(last.ReplayID, 10))
}

// eventsApplied does what follows a committed batch of change events: it
// wakes the re-reads and resyncs the batch queued, and counts the events.
func (r *runner) eventsApplied(t *table, evs []*streaming.Event) {
	r.wakeRereads(t)
	if r.resyncQueued.Swap(false) {
		wake(r.resyncWake)
	}
	for _, ev := range evs {
		r.s.metrics.events.WithLabelValues(ev.Header.ChangeType).Inc()
		if ev.Header.CommitTimestamp > 0 {
			r.s.metrics.cdcLag.Observe(time.Since(ev.Header.CommitTime()).Seconds())
		}
	}
}

// lockRows locks the rows of the batch's records in id order before any
// is written. The outbound result transaction locks its rows by id too;
// applying events in their own order would take the same rows in another
// order and could deadlock with it.
func lockRows(ctx context.Context, tx pgx.Tx, t *table, evs []*streaming.Event) error {
	var ids []string
	for _, ev := range evs {
		for _, id := range ev.Header.RecordIDs {
			if !strings.HasSuffix(id, "*") {
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`SELECT FROM %s t WHERE t.sfid = ANY($1) ORDER BY t.id FOR UPDATE`, t.target), ids)
	return err
}

// applyEventTx applies one event inside tx and returns the commit time it
// moves the watermark to (nil for gap events, which carry no data).
func (r *runner) applyEventTx(ctx context.Context, tx pgx.Tx, t *table, ev *streaming.Event) (*time.Time, error) {
	h := ev.Header
	ts := h.CommitTime().UTC()
	wildcard := false
	for _, id := range h.RecordIDs {
		if strings.HasSuffix(id, "*") {
			wildcard = true
		}
	}
	switch {
	case h.ChangeType == streaming.ChangeGapOverflow || wildcard:
		// Too many changes to describe one by one: read everything changed
		// since the watermark again.
		// From the watermark before this batch, which its later events move.
		if _, err := tx.Exec(ctx, `SELECT pgforce.inbound_request_resync($1)`, t.m.ID); err != nil {
			return nil, err
		}
		r.resyncQueued.Store(true)
		return nil, nil
	case h.IsGap() || h.ChangeType == streaming.ChangeUndelete:
		if err := t.queueReread(ctx, tx, h.RecordIDs); err != nil {
			return nil, err
		}
		if h.IsGap() {
			return nil, nil
		}
		return &ts, nil
	}
	for _, id := range h.RecordIDs {
		if err := r.applyRecordChange(ctx, tx, t, h.ChangeType, id, h.OriginClient(), ev.Fields, ts); err != nil {
			return nil, err
		}
	}
	return &ts, nil
}

// eventValue is the value of column c in an event's fields, and whether
// the event carries it.
func eventValue(c mappings.Column, fields map[string]any) (any, bool) {
	if c.Compound != "" {
		parent, has := fields[c.Compound].(map[string]any)
		if !has {
			return nil, false
		}
		v, ok := parent[c.Component]
		return v, ok
	}
	v, ok := fields[c.Name]
	return v, ok
}

// carriesNoValue says the event names a mapped column that holds one value
// (not a compound part) with the parts of a compound instead, as a change
// event does for a person's Name: the column is left alone, and the record
// read again for it. Stored as text, it held the parts' JSON.
func carriesNoValue(t *table, fields map[string]any) bool {
	for _, c := range t.cols {
		if v, ok := eventValue(c, fields); ok {
			if _, nested := v.(map[string]any); nested {
				return true
			}
		}
	}
	return false
}

// queueReread queues records ids of t to be read again, in tx; the runner
// wakes the re-reads once tx has committed (see wakeRereads).
func (t *table) queueReread(ctx context.Context, tx pgx.Tx, ids []string) error {
	_, err := tx.Exec(ctx, `INSERT INTO pgforce.inbound_reread (mapping_id, sfid)
		SELECT $1, unnest($2::text[]) ON CONFLICT (mapping_id, sfid) DO UPDATE SET queued_at = now()`, t.m.ID, ids)
	t.rereadQueued.Store(true)
	return err
}

// eventValues picks the mapped columns an event carries: a CREATE carries
// every non-empty field, an UPDATE only the changed ones (null only when
// the field was cleared). Parts of compound fields arrive nested
// (BillingAddress: {City: …}). So does a person's name, whose parts
// (FirstName, LastName) are fields of their own: the Name column's value,
// the full name, is not in the event at all (see carriesNoValue).
func eventValues(t *table, fields map[string]any) (cols []string, vals []any, casts []string) {
	for _, c := range t.cols {
		if isSystem(c.Name) && !strings.EqualFold(c.Name, "CreatedDate") {
			continue
		}
		v, ok := eventValue(c, fields)
		if !ok {
			continue
		}
		if _, nested := v.(map[string]any); nested {
			continue
		}
		cols = append(cols, pgColumn(c.Name))
		vals = append(vals, textValue(v))
		casts = append(casts, castSuffix(c.Type))
	}
	return cols, vals, casts
}

// applyRecordChange applies one record of a CREATE, UPDATE or DELETE event.
func (r *runner) applyRecordChange(ctx context.Context, tx pgx.Tx, t *table, changeType, id, origin string, fields map[string]any, ts time.Time) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	err = r.applyRecordChangeTx(ctx, sp, t, changeType, id, origin, fields, ts)
	if err == nil && (changeType == streaming.ChangeCreate || changeType == streaming.ChangeUpdate) && carriesNoValue(t, fields) {
		// A column the event names without its value is read from the
		// record itself.
		err = t.queueReread(ctx, sp, []string{id})
	}
	if err == nil {
		return sp.Commit(ctx)
	}
	if rbErr := sp.Rollback(ctx); rbErr != nil {
		return rbErr
	}
	if !isRecordError(err) {
		return err
	}
	payload := map[string]any{"changeType": changeType, "fields": fields}
	_, err2 := tx.Exec(ctx, `SELECT pgforce.inbound_error($1, 'cdc', $2, $3, $4, $5, $6)`,
		t.m.ID, id, payload, pgCode(err), fmt.Sprintf("cannot store the %s change of %s in %s: %s", strings.ToLower(changeType), id, t.target, pgMessage(err)), pgColumns(err))
	return err2
}

func (r *runner) applyRecordChangeTx(ctx context.Context, tx pgx.Tx, t *table, changeType, id, origin string, fields map[string]any, ts time.Time) error {
	switch changeType {
	case streaming.ChangeDelete:
		var q string
		if t.m.HardDelete {
			q = fmt.Sprintf(`DELETE FROM %s WHERE sfid = $1 AND (systemmodstamp IS NULL OR systemmodstamp <= $2)`, t.target)
		} else {
			q = fmt.Sprintf(`UPDATE %s t SET isdeleted = true, systemmodstamp = $2, %s WHERE sfid = $1 AND (systemmodstamp IS NULL OR systemmodstamp <= $2)`,
				t.target, fmt.Sprintf(settledStatus, "t", t.m.ID))
		}
		tag, err := tx.Exec(ctx, q, id, ts)
		if err != nil {
			return err
		}
		// A load running beside the stream may write the record after
		// this: its snapshot was taken before the delete, and the row it
		// writes was not there for the delete to find (or, with
		// hard_delete, was deleted and comes back). The record is read
		// again after the load, which finds it gone. A delete that finds no
		// row otherwise costs one such read.
		if tag.RowsAffected() == 0 || t.direct.Load() || t.seen.Load() {
			return t.queueReread(ctx, tx, []string{id})
		}
		return nil
	case streaming.ChangeCreate:
		cols, vals, casts := eventValues(t, fields)
		if t.extCol != "" {
			// The row an application inserted, if the create is its upsert
			// (see adoptByExternalID).
			for i, c := range cols {
				if c == t.extName && vals[i] != nil {
					if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %[1]s t SET sfid = $1 WHERE t.sfid IS NULL AND t.%[2]s = $2::text%[3]s
						AND NOT EXISTS (SELECT FROM %[1]s x WHERE x.sfid = $1)
						AND NOT EXISTS (SELECT FROM %[1]s y WHERE y.sfid IS NULL AND y.%[2]s = t.%[2]s AND y.id <> t.id)`, t.target, t.extCol, t.extCast), id, vals[i]); err != nil {
						return err
					}
				}
			}
		}
		done, refused, err := r.applyPending(ctx, tx, t, id, origin, cols, vals, ts)
		if done || err != nil {
			return err
		}
		cols, vals, casts = withoutColumns(cols, vals, casts, refused)
		names := []string{"sfid", "systemmodstamp", "isdeleted"}
		params := []string{"$1", "$2", "false"}
		sets := []string{"systemmodstamp = EXCLUDED.systemmodstamp", "isdeleted = false", fmt.Sprintf(settledStatus, "t", t.m.ID)}
		args := []any{id, ts}
		for i, c := range cols {
			args = append(args, vals[i])
			names = append(names, pgx.Identifier{c}.Sanitize())
			params = append(params, fmt.Sprintf("$%d::text%s", len(args), casts[i]))
			sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%[1]s", pgx.Identifier{c}.Sanitize()))
		}
		var inserted bool
		err = tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s AS t (%s) VALUES (%s)
ON CONFLICT (sfid) DO UPDATE SET %s WHERE t.systemmodstamp IS NULL OR t.systemmodstamp <= EXCLUDED.systemmodstamp
RETURNING t.xmax = 0`,
			t.target, strings.Join(names, ", "), strings.Join(params, ", "), strings.Join(sets, ", ")), args...).Scan(&inserted)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // a newer version is stored already
		}
		if err != nil || !inserted || origin == "" || origin != r.s.sf.CallOptionsClient() {
			return err
		}
		// The create is our own outbound side's, and its Id is not written
		// back yet: the row is its echo, which a lost create answer may
		// take over (see pgforce.outbound_echo_row).
		_, err = tx.Exec(ctx, `INSERT INTO pgforce.outbound_echo_row (mapping_id, sfid) VALUES ($1, $2) ON CONFLICT DO NOTHING`, t.m.ID, id)
		return err
	case streaming.ChangeUpdate:
		cols, vals, casts := eventValues(t, fields)
		done, refused, err := r.applyPending(ctx, tx, t, id, origin, cols, vals, ts)
		if done || err != nil {
			return err
		}
		cols, vals, casts = withoutColumns(cols, vals, casts, refused)
		sets := []string{"systemmodstamp = $2", fmt.Sprintf(settledStatus, "t", t.m.ID)}
		args := []any{id, ts}
		for i, c := range cols {
			args = append(args, vals[i])
			sets = append(sets, fmt.Sprintf("%s = $%d::text%s", pgx.Identifier{c}.Sanitize(), len(args), casts[i]))
		}
		// The EXISTS checks read the statement's snapshot, so they still see
		// a row that a concurrent transaction merged away or deleted while
		// the UPDATE waited for its lock.
		var updated, exists, newer bool
		err = tx.QueryRow(ctx, fmt.Sprintf(`WITH u AS (UPDATE %s t SET %s WHERE sfid = $1 AND (systemmodstamp IS NULL OR systemmodstamp <= $2) RETURNING 1)
SELECT EXISTS (SELECT FROM u), EXISTS (SELECT FROM %[1]s WHERE sfid = $1), EXISTS (SELECT FROM %[1]s WHERE sfid = $1 AND systemmodstamp > $2)`,
			t.target, strings.Join(sets, ", ")), args...).Scan(&updated, &exists, &newer)
		if err != nil {
			return err
		}
		switch {
		case updated:
			return nil
		case !exists:
			// An update of a row we do not have carries too little to
			// insert it: read the whole record.
			return t.queueReread(ctx, tx, []string{id})
		case newer:
			// A newer version is stored already: the event is stale.
			return nil
		default:
			// The row was there but the UPDATE found nothing to write: it
			// was merged or deleted concurrently, and the change would be
			// lost. Read the record again instead.
			return t.queueReread(ctx, tx, []string{id})
		}
	}
	// An unknown change type is read back rather than guessed at.
	return t.queueReread(ctx, tx, []string{id})
}

// applyPending applies a CREATE or UPDATE through the two-way rules
// (echoes, field-level merge, conflict policy) when the record's row has
// Postgres changes waiting for Salesforce; done is false when it has none
// (or the batch needs no two-way rules, see twoWayNow) and the plain path
// applies.
//
// Without queued changes, the event's own write applies, less (refused)
// the fields of a FAILED row's refused changes when the event is older
// than their refusal (see pgforce._refused_fields): the create event of
// an insert arriving after a later update of the row was refused wrote the
// inserted values over the refused ones, and pgforce.retry then sent those
// back, losing the change.
func (r *runner) applyPending(ctx context.Context, tx pgx.Tx, t *table, id, origin string, cols []string, vals []any, ts time.Time) (done bool, refused []string, err error) {
	if !t.twoWay.Load() {
		return false, nil, nil
	}
	// The row is locked first and its queued changes looked for by the
	// next statement, which sees an application's update that committed
	// while this one waited for the row (see filterPending).
	var rowID int
	var failed bool
	err = tx.QueryRow(ctx, fmt.Sprintf(`SELECT t.id, t._hc_lastop IS NOT DISTINCT FROM 'FAILED' FROM %s t WHERE t.sfid = $1 FOR UPDATE`, t.target), id).Scan(&rowID, &failed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	var pending bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.outbox o WHERE o.mapping_id = $1 AND o.record_id = $2)`, t.m.ID, rowID).Scan(&pending); err != nil {
		return false, nil, err
	}
	if !pending {
		if failed {
			err = tx.QueryRow(ctx, `SELECT pgforce._refused_fields($1, $2, $3)`, t.m.ID, rowID, ts).Scan(&refused)
		}
		return false, refused, err
	}
	values := make(map[string]any, len(cols))
	for i, c := range cols {
		values[c] = vals[i]
	}
	echo := origin != "" && origin == r.s.sf.CallOptionsClient()
	return true, nil, t.writeFiltered(ctx, tx, rowID, values, &ts, echo, false, nil)
}

// withoutColumns is an event's columns, values and casts less drop.
func withoutColumns(cols []string, vals []any, casts []string, drop []string) ([]string, []any, []string) {
	if len(drop) == 0 {
		return cols, vals, casts
	}
	var c2, k2 []string
	var v2 []any
	for i, c := range cols {
		if slices.Contains(drop, c) {
			continue
		}
		c2, v2, k2 = append(c2, c), append(v2, vals[i]), append(k2, casts[i])
	}
	return c2, v2, k2
}
