package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/pgforce/pgforce/worker/budget"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// Salesforce creates a record without an external id anew on every call:
// a create whose answer was lost after Salesforce committed it (the worker
// died with the call in flight, or the connection dropped) made a second
// record when it was sent again, and its change event a second row. So a
// plain insert that an earlier claim may have sent (see change.doubt) is
// first looked for among the records our user created since it was
// captured; one that matches it in every field it carries is taken as its
// record, and the insert is not sent. Fields that changes queued after the
// insert set are left out of the match, since the earlier attempt may or
// may not have carried them; those changes go back to the queue, and are
// sent as an update of the record found.
//
// A record another row already holds is that row's, except a row the
// inbound worker made from the record's own change event
// (pgforce.outbound_echo_row), which the write-back then merges into the
// insert's row as it does for any echo (pgforce._outbound_adopt_echo_rows).
// Without an external id only the values tell records apart, so a record
// that Salesforce changed as it saved it (a trigger, a flow, a default the
// insert did not set is fine) is not recognised, and the insert is sent
// again as before.
const (
	// createdSkew widens the search back from the capture time, for the
	// clocks of Postgres and Salesforce.
	createdSkew = 5 * time.Minute
	// maxCreatedRecords bounds the records read per search; the window
	// runs from the capture of the oldest insert in doubt, which holds
	// its record unless Salesforce made more than this since.
	maxCreatedRecords = 10000
)

var errEnoughCreated = errors.New("enough created records read")

// findCreated settles the plain inserts of changes that may have created
// their record already: found[i] is true when results[i] is set, either
// to the record found (outOK with its Id) or, when the search failed, to
// a transient outcome that sends nothing until it can be made.
func (s *Service) findCreated(ctx context.Context, m *Mapping, changes []*change, results []outcome) map[int]bool {
	var doubt []int
	var since time.Time
	for i, c := range changes {
		if c.deferTo || c.Op != "insert" || c.extID != "" || c.doubt == nil {
			continue
		}
		doubt = append(doubt, i)
		if since.IsZero() || c.doubt.since.Before(since) {
			since = c.doubt.since
		}
	}
	if len(doubt) == 0 {
		return nil
	}
	found := make(map[int]bool, len(doubt))
	ids, err := s.lookUpCreated(ctx, m, changes, doubt, since)
	if err != nil {
		s.log.Warn("outbound: could not look for the records of inserts that may have reached Salesforce; they wait",
			"mapping", m.ID, "inserts", len(doubt), "err", err)
		for _, i := range doubt {
			results[i] = outcome{kind: outTransient, unsent: true}
			found[i] = true
		}
		return found
	}
	for i, id := range ids {
		c := changes[i]
		results[i] = outcome{kind: outOK, id: id}
		found[i] = true
		if after := c.doubt.upTo + 1; after < len(c.Entries) {
			c.putBack = c.Entries[after:]
			c.Entries = c.Entries[:after]
		}
	}
	if len(ids) > 0 {
		s.log.Info("outbound: inserts that may have reached Salesforce had created their records; they are not sent again",
			"mapping", m.ID, "found", len(ids), "of", len(doubt))
	}
	return found
}

// lookUpCreated reads the records of m's object that our user created
// since the capture of the oldest insert in doubt, less the records other
// rows hold, and matches each insert at doubt (indexes into changes, in
// capture order) with the oldest one that carries all of its values.
func (s *Service) lookUpCreated(ctx context.Context, m *Mapping, changes []*change, doubt []int, since time.Time) (map[int]string, error) {
	user, err := s.sf.UserID(ctx)
	if err != nil {
		return nil, fmt.Errorf("who creates the records: %w", err)
	}
	fieldSet := map[string]bool{}
	for _, i := range doubt {
		for k, v := range changes[i].record.Fields {
			if _, rel := v.(salesforce.Record); !rel {
				fieldSet[k] = true
			}
		}
	}
	fields := make([]string, 0, len(fieldSet))
	for k := range fieldSet {
		if k != "Id" && k != "CreatedDate" {
			fields = append(fields, k)
		}
	}
	sort.Strings(fields)
	soql := fmt.Sprintf("SELECT %s FROM %s WHERE CreatedById = '%s' AND CreatedDate >= %s ORDER BY CreatedDate, Id",
		strings.Join(append([]string{"Id", "CreatedDate"}, fields...), ", "), m.SObject,
		strings.ReplaceAll(user, "'", `\'`), since.Add(-createdSkew).UTC().Format("2006-01-02T15:04:05.000Z"))
	if b := s.opts.Budget; b != nil {
		if err := b.Wait(ctx, budget.Write); err != nil {
			return nil, err
		}
	}
	var created []salesforce.Record
	err = s.sf.Query(ctx, soql, func(r salesforce.Record) error {
		if len(created) == maxCreatedRecords {
			return errEnoughCreated
		}
		created = append(created, r)
		return nil
	})
	if b := s.opts.Budget; b != nil {
		b.Observe(err)
	}
	if errors.Is(err, errEnoughCreated) {
		s.log.Warn("outbound: more records were created since an insert in doubt than are searched; those not found are sent again",
			"mapping", m.ID, "since", since, "searched", maxCreatedRecords)
	} else if err != nil {
		return nil, err
	}
	if len(created) == 0 {
		return nil, nil
	}

	ids := make([]string, len(created))
	for k, r := range created {
		ids[k] = r.ID()
	}
	held := map[string]bool{} // Id -> held by a row that is not an echo
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT t.sfid FROM %s t
		WHERE t.sfid = ANY($1)
		  AND NOT EXISTS (SELECT FROM pgforce.outbound_echo_row e WHERE e.mapping_id = $2 AND e.sfid = t.sfid)`, m.Table()), ids, m.ID)
	if err != nil {
		return nil, fmt.Errorf("which records rows hold: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		held[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	out := map[int]string{}
	taken := map[string]bool{}
	for _, i := range doubt {
		sent := map[string]any{}
		for k, v := range changes[i].record.Fields {
			if !changes[i].doubt.later[strings.ToLower(k)] {
				sent[k] = v
			}
		}
		if len(sent) == 0 {
			continue // nothing tells its record apart
		}
		for _, r := range created {
			id := r.ID()
			if held[id] || taken[id] || !carries(r, sent) {
				continue
			}
			out[i] = id
			taken[id] = true
			break
		}
	}
	return out, nil
}

// carries reports whether record r holds every value of sent (relationships
// set by external id aside, which a query does not return as sent).
func carries(r salesforce.Record, sent map[string]any) bool {
	for k, v := range sent {
		if _, rel := v.(salesforce.Record); rel || k == "Id" {
			continue
		}
		got, ok := r.Get(k)
		if !ok || !sameSent(v, got) {
			return false
		}
	}
	return true
}

// sameSent compares a value as sent with the value a query returns for it,
// which may be written differently: numbers in another notation, datetimes
// with another offset.
func sameSent(sent, got any) bool {
	switch sv := sent.(type) {
	case nil:
		return got == nil
	case bool:
		g, ok := got.(bool)
		return ok && g == sv
	case string:
		g, ok := got.(string)
		if !ok {
			return false
		}
		if g == sv {
			return true
		}
		a, errA := parseSentTime(sv)
		b, errB := parseSentTime(g)
		return errA == nil && errB == nil && a.Equal(b)
	default:
		a, okA := new(big.Rat).SetString(numberText(sent))
		b, okB := new(big.Rat).SetString(numberText(got))
		return okA && okB && a.Cmp(b) == 0
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

// parseSentTime reads a datetime, or a time of day as the REST API writes
// it ("10:30:00.000Z").
func parseSentTime(s string) (time.Time, error) {
	if t, err := salesforce.ParseDateTime(s); err == nil {
		return t, nil
	}
	return time.Parse("15:04:05.000Z07:00", s)
}
