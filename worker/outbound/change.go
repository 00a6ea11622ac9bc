package outbound

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/pgforce/pgforce/worker/salesforce"
)

// entry is one claimed pgforce.outbox row.
type entry struct {
	ID       int64
	Op       string // insert, update, delete
	RecordID int
	SFID     string
	New      map[string]any // Postgres column -> value (json.Number for numbers)
	RetryOf  int64
	// Attempts counts the claims that may have sent the entry, this one
	// included; SentFrom is when the first of them began.
	Attempts int
	SentFrom time.Time
	// ClaimedAt is when the claim that holds the entry was made: with
	// the worker's name, it tells this claim from a later one.
	ClaimedAt time.Time
}

// change is every claimed entry of one record merged into the single
// operation that brings Salesforce to the record's latest state.
type change struct {
	RecordID int
	Op       string // insert, update, delete, or "" when nothing is left to send
	SFID     string
	Values   map[string]any // Postgres column -> latest value
	Entries  []int64        // outbox ids this change covers
	RetryOf  []int64        // errors this change retries
	first    int64          // lowest outbox id, for ordering
	// retriedDelete says a pgforce.retry of a refused delete is among the
	// entries (see endsBefore).
	retriedDelete bool
	// doubt is set when an insert among the entries was claimed before and
	// may have created its record, the answer lost (see findCreated).
	doubt *doubtfulInsert
	// putBack holds entries that go back to the queue unsent when the
	// change is written (see findCreated).
	putBack []int64
	// echoGone says the change deletes a record that a lost insert made:
	// the row its change event created goes with it.
	echoGone bool

	// Filled by prepare.
	// fromRow names the values prepare took from the row rather than from
	// the captured change (a whole row sent as an insert, the fields of a
	// refused change sent again): those of fields Salesforce does not let
	// pgforce set are left out, not refused (see readOnly).
	fromRow map[string]bool
	record  salesforce.Record // what is sent
	extID   string            // value of the upsert field for an upsert
	deferTo bool              // a parent has no Id yet: try again later
	// rowStamp is the row's systemmodstamp: the last change of Salesforce's
	// that reached it (nil when none has), for checkPolled.
	rowStamp *time.Time
	// wholeRow is set when prepare sends an update as the insert of the
	// whole row (the row has no record yet): the values a lost answer
	// leaves in doubt, for the entry to become that insert (see record).
	wholeRow map[string]any
	// invalid says a value of the change cannot be sent (a datetime
	// Salesforce has no equivalent of): the record fails on its own, as
	// if Salesforce had refused it, and the rest of its batch is sent.
	invalid *salesforce.RecordError
}

// doubtfulInsert is an insert entry that an earlier claim may have sent.
type doubtfulInsert struct {
	since  time.Time       // when the first claim that may have sent it began
	upTo   int             // the index in Entries of the insert entry
	values map[string]any  // what it carried (Postgres column -> value)
	later  map[string]bool // columns that entries after it set
}

// merge folds entries (in outbox id order) into one change per record,
// keeping the latest value of each field, and returns the changes in the
// order of their first entry, which is transaction order. The changes take
// over the entries' New maps (a record's first entry lends its map to the
// change rather than having it copied), so the entries are spent.
// upsertColumn is the column of the mapping's upsert field, or "".
func merge(entries []entry, upsertColumn string) []*change {
	byRecord := make(map[int]*change, len(entries))
	out := make([]*change, 0, len(entries))
	for _, e := range entries {
		c := byRecord[e.RecordID]
		if c != nil && c.endsBefore(e, upsertColumn) {
			// The entries of another record that has the same row id: they
			// wait for the next batch, after this change is recorded.
			c = &change{RecordID: e.RecordID, first: e.ID, deferTo: true}
			byRecord[e.RecordID] = c
			out = append(out, c)
		}
		if c == nil {
			c = &change{RecordID: e.RecordID, first: e.ID}
			byRecord[e.RecordID] = c
			out = append(out, c)
		}
		c.Entries = append(c.Entries, e.ID)
		if c.doubt != nil {
			for k := range e.New {
				c.doubt.later[k] = true
			}
		} else if e.Op == "insert" && e.Attempts > 1 {
			// The insert's values are copied: the change takes its map over
			// and later entries write into it.
			values := make(map[string]any, len(e.New))
			for k, v := range e.New {
				values[k] = v
			}
			c.doubt = &doubtfulInsert{since: e.SentFrom, upTo: len(c.Entries) - 1, values: values, later: map[string]bool{}}
		}
		if e.RetryOf != 0 {
			c.RetryOf = append(c.RetryOf, e.RetryOf)
			c.retriedDelete = c.retriedDelete || e.Op == "delete"
		}
		if e.SFID != "" {
			c.SFID = e.SFID
		}
		switch e.Op {
		case "insert":
			// A fresh insert or a retry carrying the whole row: its values
			// replace what came before.
			c.Op = "insert"
			c.Values = e.New
		case "update":
			if c.Op == "" || c.Op == "delete" {
				c.Op = "update"
			}
			if c.Values == nil {
				c.Values = e.New
			} else {
				for k, v := range e.New {
					c.Values[k] = v
				}
			}
		case "delete":
			if c.Op == "insert" && c.SFID == "" {
				// Created and deleted before it ever reached Salesforce.
				c.Op = ""
			} else {
				c.Op = "delete"
			}
			c.Values = map[string]any{}
		}
		if c.Values == nil {
			c.Values = map[string]any{}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out
}

// endsBefore reports whether entry e, of c's row id, is about another
// Salesforce record than the entries c holds, so that merging it would
// send one record's change to the other. A row id names another record
// when the application deletes a row and inserts one with the same id (it
// keeps its own ids, or replaces rows): folded into one insert, the delete
// was lost and the old record stayed in Salesforce. A row put back with
// the same sfid is the same record, written again, and stays one change.
// The retry of a refused delete (pgforce.retry) comes after the row is
// long gone, so whatever else is queued under its id is another row's.
//
// An update of the upsert field also waits for the insert before it to be
// recorded: folded into it, the insert was sent as an upsert on the new
// value, which created a second record when an earlier attempt on the old
// value had reached Salesforce (its answer lost, or the worker stopped).
func (c *change) endsBefore(e entry, upsertColumn string) bool {
	switch {
	case c.deferTo:
		return false // everything after a split waits with it
	case c.retriedDelete || (e.Op == "delete" && e.RetryOf != 0):
		return true
	case c.Op == "insert" && e.Op == "update" && upsertColumn != "":
		// An insert without a value there went as a plain create, never
		// an upsert on another value: the value set later may ride along.
		_, changed := e.New[upsertColumn]
		return changed && c.Values[upsertColumn] != nil
	case e.Op == "insert" && c.Op == "delete":
		return c.SFID != "" && e.SFID != c.SFID
	default:
		return c.SFID != "" && e.SFID != "" && e.SFID != c.SFID
	}
}

// decodeJSONB decodes an outbox jsonb column keeping numbers exact.
func decodeJSONB(b []byte) (map[string]any, error) {
	if b == nil {
		return nil, nil
	}
	var m map[string]any
	if err := exactDecoder(b).Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// exactDecoder reads the JSON values in b, numbers as json.Number so that
// no digit of a numeric column is lost.
func exactDecoder(b []byte) *json.Decoder {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d
}

// sfValue converts a Postgres value (as to_jsonb wrote it) to the JSON the
// REST API wants for a field of type typ.
func sfValue(typ string, v any) (any, error) {
	s, ok := v.(string)
	if !ok || v == nil {
		return v, nil
	}
	switch typ {
	case "datetime":
		t, err := parseTimestamp(s)
		if err == nil && !salesforceYear(t) {
			err = fmt.Errorf("datetime %s is not one Salesforce holds (years 1700 to 4000, no infinity)", s)
		}
		if err != nil {
			return nil, err
		}
		return salesforce.FormatDateTime(t), nil
	case "date":
		// Postgres's infinity and BC dates, and years Salesforce does not
		// hold, failed the record in Salesforce with a parse error (which
		// can fail a whole Collections call), not as a record of its own.
		t, err := time.Parse("2006-01-02", s)
		if err != nil || !salesforceYear(t) {
			return nil, fmt.Errorf("date %s is not one Salesforce holds (years 1700 to 4000, no infinity)", s)
		}
		return s, nil
	case "time":
		t, err := time.Parse("15:04:05.999999999", s)
		if err != nil {
			// Postgres has 24:00:00, the end of the day; Salesforce does not.
			return nil, fmt.Errorf("time %s is not a time of day Salesforce holds (00:00:00 to 23:59:59.999)", s)
		}
		return t.Format("15:04:05.000") + "Z", nil
	}
	return v, nil
}

// salesforceYear says t falls in the years Salesforce holds dates and
// datetimes in: 1700 to 4000.
func salesforceYear(t time.Time) bool {
	return t.Year() >= 1700 && t.Year() <= 4000
}

// pgOffset is the time zone offset ending a timestamptz as to_jsonb writes
// it: +HH:MM, or +HH:MM:SS for the local mean times zones had before they
// took whole minutes (Amsterdam's +00:19:32 until 1937), which Go's
// RFC 3339 parser refuses.
var pgOffset = regexp.MustCompile(`([+-])(\d\d):(\d\d)(?::(\d\d))?$`)

// parseTimestamp parses a timestamp as to_jsonb writes it, in the session's
// time zone. A column without a time zone, as in a table kept from Heroku
// Connect, holds UTC.
func parseTimestamp(s string) (time.Time, error) {
	const local = "2006-01-02T15:04:05.999999999"
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil // Z or a whole-minute offset
	}
	m := pgOffset.FindStringSubmatchIndex(s)
	if m == nil {
		t, err := time.Parse(local, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("datetime %s is not one Salesforce holds (years 1700 to 4000, no infinity)", s)
		}
		return t, nil
	}
	t, err := time.Parse(local, s[:m[0]])
	if err != nil {
		return time.Time{}, fmt.Errorf("datetime %s is not one Salesforce holds (years 1700 to 4000, no infinity)", s)
	}
	part := func(i int) time.Duration {
		if m[2*i] < 0 {
			return 0
		}
		n, _ := strconv.Atoi(s[m[2*i]:m[2*i+1]])
		return time.Duration(n)
	}
	offset := part(2)*time.Hour + part(3)*time.Minute + part(4)*time.Second
	if s[m[2]] == '-' {
		offset = -offset
	}
	return t.Add(-offset), nil
}
