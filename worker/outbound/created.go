package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// Salesforce creates a record without an external id anew on every call:
// a create whose answer was lost after Salesforce committed it (the worker
// died with the call in flight, or the connection dropped) made a second
// record when it was sent again, and its change event a second row. So a
// plain insert that an earlier claim may have sent (see change.doubt) is
// first looked for among the records our user created since that claim; one that matches it in every field it carries is taken as its
// record, and the insert is not sent. Fields that changes queued after the
// insert set are left out of the match, since the earlier attempt may or
// may not have carried them; those changes go back to the queue, and are
// sent as an update of the record found.
//
// A record another row already holds, or a queued change names, is that
// row's, except a row the inbound worker made from the record's own change
// event (pgforce.outbound_echo_row), which the write-back then merges into
// the insert's row as it does for any echo (pgforce._outbound_adopt_echo_rows).
// A record whose create is in flight for another row is held by none yet,
// so the search is made only while no insert of the mapping claimed
// elsewhere, by any worker, carries the values of one searched for, before
// the query and after its first page (the claimer stops after a batch in
// doubt, and such a batch is deferred otherwise); two batches in doubt with
// look-alike inserts never search at once for the same reason.
// Without an external id only the values tell records apart, so a record
// that Salesforce changed as it saved it (a trigger, a flow, a default the
// insert did not set is fine) is not recognised, and the insert is sent
// again as before.
const (
	// createdSkew widens the search back from the first claim that may
	// have sent an insert, for the clocks of Postgres and Salesforce.
	createdSkew = time.Minute
	// maxCreatedRecords bounds the records read per search, newest first
	// back to the first claim of the oldest insert in doubt, a page at a time
	// (createdPage), until every insert in doubt is found.
	maxCreatedRecords = 200000
	createdPage       = 2000
)

var (
	errEnoughCreated  = errors.New("every insert in doubt found")
	errTooManyCreated = errors.New("too many created records to search")
	errNotAlone       = errors.New("another insert of the mapping is in flight; the search waits for it")
)

// alone fails with errNotAlone while an insert of m is claimed outside
// mine whose record could pass for one searched for (like says which): its
// create may be in flight, its record held by no row yet. A record's
// values are its claimed entries merged, as its batch sends them.
//
// A record without an Id whose claimed entries hold no insert (an update
// sent as an insert of the whole row, after its insert failed) has values
// only its row can tell: the search waits for it.
func (s *Service) alone(ctx context.Context, m *Mapping, mine []int64, like func(fields map[string]any) bool) error {
	// Asked first, since it stops at the first such entry: the values are
	// read only when some create may be in flight.
	var busy bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.outbox o
		WHERE o.mapping_id = $1 AND o.op <> 'delete' AND o.sfid IS NULL AND o.claimed_at IS NOT NULL AND o.id <> ALL($2))`,
		m.ID, mine).Scan(&busy); err != nil || !busy {
		return err
	}
	rows, err := s.pool.Query(ctx, `SELECT o.record_id, o.op, o.new FROM pgforce.outbox o
		WHERE o.mapping_id = $1 AND o.claimed_at IS NOT NULL AND o.id <> ALL($2)
		  AND o.record_id IN (SELECT i.record_id FROM pgforce.outbox i
		                      WHERE i.mapping_id = $1 AND i.op <> 'delete' AND i.sfid IS NULL AND i.claimed_at IS NOT NULL AND i.id <> ALL($2))
		ORDER BY o.id`, m.ID, mine)
	if err != nil {
		return fmt.Errorf("look for inserts in flight: %w", err)
	}
	defer rows.Close()
	inFlight := map[int]map[string]any{}
	unknown := false
	for rows.Next() {
		var id int
		var op string
		var raw []byte
		if err := rows.Scan(&id, &op, &raw); err != nil {
			return err
		}
		values, err := decodeJSONB(raw)
		if err != nil {
			return err
		}
		switch {
		case op == "insert":
			inFlight[id] = values
		case op == "delete":
			delete(inFlight, id) // created and deleted in one batch: nothing is sent
		case inFlight[id] != nil:
			for k, v := range values {
				inFlight[id][k] = v
			}
		default:
			unknown = true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if unknown {
		return errNotAlone
	}
	for _, values := range inFlight {
		if like(insertFields(m, values)) {
			return errNotAlone
		}
	}
	return nil
}

// findCreated settles the changes whose insert may have created their
// record already. A plain insert (no upsert field) found there is recorded
// as written: found[i] is true and results[i] outOK with the record's Id.
// A row inserted and deleted again, whose record may exist although the
// insert was never answered, becomes a delete of the record found (with an
// upsert field too). When the search fails, found[i] is true and results[i]
// a transient outcome: nothing is sent until it can be made.
func (s *Service) findCreated(ctx context.Context, m *Mapping, changes []*change, results []outcome) map[int]bool {
	want := map[int]map[string]any{}
	var since time.Time
	for i, c := range changes {
		if !c.inDoubt() {
			continue
		}
		sent := c.record.Fields
		if c.Op == "" {
			sent = insertFields(m, c.doubt.values)
		}
		// Fields that later changes set may hold either value there; a
		// relationship column set later may have changed any lookup.
		laterRel := false
		for _, rc := range m.RelColumns {
			laterRel = laterRel || c.doubt.later[rc]
		}
		match := map[string]any{}
		for k, v := range sent {
			col, _ := m.column(strings.ToLower(k))
			if _, rel := v.(salesforce.Record); rel || k == "Id" || c.doubt.later[strings.ToLower(k)] || laterRel && col.Type == "reference" {
				continue
			}
			match[k] = v
		}
		if len(match) == 0 {
			continue // nothing tells its record apart
		}
		want[i] = match
		if since.IsZero() || c.doubt.since.Before(since) {
			since = c.doubt.since
		}
	}
	if len(want) == 0 {
		return nil
	}
	found := make(map[int]bool, len(want))
	// The batch's own inserts wait for the search: those not in doubt
	// have no record yet, and one that an earlier claim of theirs made
	// is a record like any other the search may find.
	var mine []int64
	for _, c := range changes {
		mine = append(mine, c.Entries...)
	}
	ids, err := s.lookUpCreated(ctx, m, want, since, mine)
	if err != nil {
		lvl := slog.LevelWarn
		if errors.Is(err, errNotAlone) {
			lvl = slog.LevelDebug
		}
		s.log.Log(ctx, lvl, "outbound: could not look for the records of inserts that may have reached Salesforce; they wait",
			"mapping", m.ID, "inserts", len(want), "err", err)
		kind := outTransient
		if errors.Is(err, errNotAlone) {
			kind = outDeferred // waits for the other inserts, without a backoff
		}
		for i := range want {
			results[i] = outcome{kind: kind, unsent: true}
			found[i] = true
		}
		return found
	}
	for i, id := range ids {
		c := changes[i]
		if c.Op == "" {
			c.Op, c.SFID, c.echoGone = "delete", id, true
			continue
		}
		results[i] = outcome{kind: outOK, id: id}
		found[i] = true
		if after := c.doubt.upTo + 1; after < len(c.Entries) {
			c.putBack = c.Entries[after:]
			c.Entries = c.Entries[:after]
		}
	}
	if len(ids) > 0 {
		s.log.Info("outbound: inserts that may have reached Salesforce had created their records; they are not sent again",
			"mapping", m.ID, "found", len(ids), "of", len(want))
	}
	return found
}

// inDoubt reports whether c is searched for (see findCreated): an insert
// an earlier claim may have sent that goes as a plain create, or whose row
// is gone since.
func (c *change) inDoubt() bool {
	return c.doubt != nil && !c.deferTo && (c.Op == "insert" && c.extID == "" || c.Op == "")
}

// insertFields is what an insert of values (Postgres column -> value) sends
// (see buildRecords), relationship columns aside.
func insertFields(m *Mapping, values map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range values {
		if slices.Contains(m.RelColumns, k) {
			continue
		}
		if name, sv, ok, _ := m.sendValue(k, v, true); ok {
			out[name] = sv
		}
	}
	return out
}

// lookUpCreated reads the records of m's object that our user created
// since the first claim of the oldest insert in doubt, less the records other
// rows hold, and matches each change of want (index into the batch -> the
// fields to match, in API names) with a record that carries all of them:
// the newest not yet taken, taking the changes in batch order.
//
// It fails with errNotAlone while an insert of m is claimed outside mine,
// the entries of the batch.
func (s *Service) lookUpCreated(ctx context.Context, m *Mapping, want map[int]map[string]any, since time.Time, mine []int64) (map[int]string, error) {
	user, err := s.sf.UserID(ctx)
	if err != nil {
		return nil, fmt.Errorf("who creates the records: %w", err)
	}
	order := make([]int, 0, len(want))
	fieldSet := map[string]bool{}
	for i, match := range want {
		order = append(order, i)
		for k := range match {
			fieldSet[k] = true
		}
	}
	sort.Ints(order)
	fields := make([]string, 0, len(fieldSet))
	for k := range fieldSet {
		if k != "CreatedDate" {
			fields = append(fields, k)
		}
	}
	sort.Strings(fields)

	// The changes are grouped by the fields they match on, and looked up by
	// the key of their values, so that each record read costs one lookup
	// per group, however many changes are in doubt.
	type group struct {
		names []string
		byKey map[string][]int // changes, in batch order
		// loose are names without the lookups, which an insert in flight
		// may set through a relationship column; looseKeys holds the keys
		// of the changes over them, and looseValues their values, one
		// normValue per name (see alone).
		loose       []string
		looseKeys   map[string]bool
		looseValues [][]string
	}
	groups := map[string]*group{}
	for _, i := range order {
		names := make([]string, 0, len(want[i]))
		for k := range want[i] {
			names = append(names, k)
		}
		sort.Strings(names)
		sig := strings.Join(names, ",")
		g := groups[sig]
		if g == nil {
			g = &group{names: names, byKey: map[string][]int{}, looseKeys: map[string]bool{}}
			for _, n := range names {
				if col, _ := m.column(strings.ToLower(n)); col.Type != "reference" {
					g.loose = append(g.loose, n)
				}
			}
			groups[sig] = g
		}
		get := func(k string) (any, bool) { v, ok := want[i][k]; return v, ok }
		key, _ := valuesKey(get, names)
		g.byKey[key] = append(g.byKey[key], i)
		loose, _ := valuesKey(get, g.loose)
		if !g.looseKeys[loose] {
			g.looseKeys[loose] = true
			vals := make([]string, len(g.loose))
			for k, n := range g.loose {
				vals[k] = normValue(want[i][n])
			}
			g.looseValues = append(g.looseValues, vals)
		}
	}
	// like says whether an insert in flight that sends fields may make a
	// record one of the changes would take. A field it does not send may
	// take any value there (a default, a trigger), so it matches anything.
	like := func(fields map[string]any) bool {
		for _, g := range groups {
			if key, ok := valuesKey(func(k string) (any, bool) { v, ok := fields[k]; return v, ok }, g.loose); ok {
				if g.looseKeys[key] {
					return true
				}
				continue
			}
			for _, vals := range g.looseValues {
				same := true
				for k, n := range g.loose {
					if v, sent := fields[n]; sent && normValue(v) != vals[k] {
						same = false
						break
					}
				}
				if same {
					return true
				}
			}
		}
		return false
	}
	if err := s.alone(ctx, m, mine, like); err != nil {
		return nil, err
	}

	out := map[int]string{}
	var page []salesforce.Record
	match := func() error {
		ids := make([]string, len(page))
		for k, r := range page {
			ids[k] = r.ID()
		}
		held, err := s.heldRecords(ctx, m, ids)
		if err != nil {
			return err
		}
		for _, r := range page {
			if held[r.ID()] {
				continue
			}
			for _, g := range groups {
				key, ok := valuesKey(r.Get, g.names)
				if waiting := g.byKey[key]; ok && len(waiting) > 0 {
					out[waiting[0]] = r.ID()
					g.byKey[key] = waiting[1:]
					break
				}
			}
		}
		page = page[:0]
		if len(out) == len(want) {
			return errEnoughCreated
		}
		return nil
	}

	soql := fmt.Sprintf("SELECT %s FROM %s WHERE CreatedById = '%s' AND CreatedDate >= %s ORDER BY CreatedDate DESC, Id DESC",
		strings.Join(append([]string{"Id", "CreatedDate"}, fields...), ", "), m.SObject,
		strings.ReplaceAll(user, "'", `\'`), since.Add(-createdSkew).UTC().Format("2006-01-02T15:04:05.000Z"))
	if err := s.waitBudget(ctx, m); err != nil {
		return nil, err
	}
	read := 0
	err = s.sf.Query(ctx, soql, func(r salesforce.Record) error {
		if read == maxCreatedRecords {
			return errTooManyCreated
		}
		read++
		// Any create claimed since the query began may be among its
		// records: the first page is checked once the query has answered.
		if read == 1 {
			if err := s.alone(ctx, m, mine, like); err != nil {
				return err
			}
		}
		page = append(page, r)
		if len(page) == createdPage {
			return match()
		}
		return nil
	})
	if err == nil && len(page) > 0 {
		err = match()
	}
	if b := s.opts.Budget; b != nil {
		b.Observe(err)
	}
	switch {
	case errors.Is(err, errEnoughCreated):
	case errors.Is(err, errTooManyCreated):
		s.log.Warn("outbound: more records were created since an insert in doubt than are searched; those not found are sent again",
			"mapping", m.ID, "since", since, "searched", maxCreatedRecords, "found", len(out), "of", len(want))
	case err != nil:
		return nil, err
	}
	return out, nil
}

// heldRecords returns which of ids a row of m holds (other than a row the
// inbound worker made from the record's own change event) or a queued
// change names.
func (s *Service) heldRecords(ctx context.Context, m *Mapping, ids []string) (map[string]bool, error) {
	held := map[string]bool{}
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT t.sfid FROM %s t
		WHERE t.sfid = ANY($1)
		  AND NOT EXISTS (SELECT FROM pgforce.outbound_echo_row e WHERE e.mapping_id = $2 AND e.sfid = t.sfid)
		UNION
		SELECT o.sfid FROM pgforce.outbox o WHERE o.mapping_id = $2 AND o.sfid = ANY($1)`, m.Table()), ids, m.ID)
	if err != nil {
		return nil, fmt.Errorf("which records rows hold: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		held[id] = true
	}
	return held, rows.Err()
}

// valuesKey is the key of the values get gives for names, written so that
// a value as sent and as a query returns it give the same key; ok is false
// when a name has no value.
func valuesKey(get func(string) (any, bool), names []string) (key string, ok bool) {
	var b strings.Builder
	for _, n := range names {
		v, ok := get(n)
		if !ok {
			return "", false
		}
		b.WriteString(normValue(v))
		b.WriteByte(0)
	}
	return b.String(), true
}

// normValue writes a value so that the value as sent and as a query
// returns it read the same: numbers in any notation, datetimes with any
// offset. Datetimes and times compare to the second, since Salesforce may
// store a datetime without the milliseconds it was sent with.
func normValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("b%t", x)
	case string:
		if x == "" {
			return "null" // Salesforce stores empty text as null
		}
		if t, err := salesforce.ParseDateTime(x); err == nil {
			return "t" + t.UTC().Truncate(time.Second).Format(time.RFC3339)
		}
		if t, err := time.Parse("15:04:05.000Z07:00", x); err == nil {
			return "h" + t.UTC().Format("15:04:05")
		}
		return "s" + x
	default:
		if r, ok := new(big.Rat).SetString(numberText(v)); ok {
			return "n" + r.RatString()
		}
		return fmt.Sprintf("?%v", v)
	}
}

func numberText(v any) string {
	switch n := v.(type) {
	case json.Number:
		return n.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(n)
	}
}
