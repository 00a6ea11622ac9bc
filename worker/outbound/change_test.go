package outbound

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// merge hands each record's values to one change, which takes over the
// entries' maps: a record's later entries land in its change, never in
// another record's.
func TestMergeKeepsTheLatestValueOfEachFieldPerRecord(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	entries := []entry{
		{ID: 1, Op: "update", RecordID: 10, SFID: "001A", New: map[string]any{"name": "a1"}},
		{ID: 2, Op: "update", RecordID: 20, SFID: "001B", New: map[string]any{"name": "b1"}},
		{ID: 3, Op: "update", RecordID: 10, New: map[string]any{"name": "a2", "annualrevenue": num("5")}},
		{ID: 4, Op: "insert", RecordID: 30, New: map[string]any{"name": "c1", "industry": "Energy"}},
		{ID: 5, Op: "update", RecordID: 30, New: map[string]any{"industry": "Banking"}},
		{ID: 6, Op: "insert", RecordID: 40, New: map[string]any{"name": "d1"}},
		{ID: 7, Op: "delete", RecordID: 40},
		{ID: 8, Op: "delete", RecordID: 20, SFID: "001B"},
		{ID: 9, Op: "update", RecordID: 50, SFID: "001E", New: map[string]any{"name": "e1"}},
		{ID: 10, Op: "delete", RecordID: 50, SFID: "001E"},
		{ID: 11, Op: "update", RecordID: 50, New: map[string]any{"name": "e2"}},
	}
	changes := merge(entries, "")
	type want struct {
		op, sfid string
		values   map[string]any
		entries  []int64
	}
	got := map[int]want{}
	var order []int
	for _, c := range changes {
		got[c.RecordID] = want{c.Op, c.SFID, c.Values, c.Entries}
		order = append(order, c.RecordID)
	}
	require.Equal(t, []int{10, 20, 30, 40, 50}, order, "in the order of each record's first entry")
	require.Equal(t, want{"update", "001A", map[string]any{"name": "a2", "annualrevenue": num("5")}, []int64{1, 3}}, got[10])
	require.Equal(t, want{"delete", "001B", map[string]any{}, []int64{2, 8}}, got[20])
	require.Equal(t, want{"insert", "", map[string]any{"name": "c1", "industry": "Banking"}, []int64{4, 5}}, got[30])
	require.Equal(t, want{"", "", map[string]any{}, []int64{6, 7}}, got[40], "created and deleted before it reached Salesforce: nothing to send")
	require.Equal(t, want{"update", "001E", map[string]any{"name": "e2"}, []int64{9, 10, 11}}, got[50])
	require.Equal(t, map[string]any{"name": "b1"}, entries[1].New, "record 20's values never took another record's fields")
}

// A row deleted and inserted again with its id is a new record unless it
// came back with its sfid: the delete goes now and the insert (with what
// follows it) waits for the next batch, rather than folding the two into
// an insert that leaves the deleted record in Salesforce. The retry of a
// refused delete never merges with the changes of a row that took its id,
// nor a change of the upsert field with the insert before it.
func TestMergeSendsADeleteBeforeTheInsertThatReusedItsRowsId(t *testing.T) {
	changes := merge([]entry{
		{ID: 1, Op: "delete", RecordID: 10, SFID: "001A"},
		{ID: 2, Op: "insert", RecordID: 10, New: map[string]any{"name": "new"}},
		{ID: 3, Op: "update", RecordID: 10, New: map[string]any{"name": "newer"}},
		{ID: 4, Op: "delete", RecordID: 20, SFID: "001B"},
		{ID: 5, Op: "insert", RecordID: 20, SFID: "001B", New: map[string]any{"name": "copy"}},
		{ID: 6, Op: "delete", RecordID: 30, SFID: "001C"},
		{ID: 7, Op: "insert", RecordID: 30, SFID: "001D", New: map[string]any{"name": "other"}},
		// The retry of a refused delete, around the changes of a row that
		// has taken the id since.
		{ID: 8, Op: "update", RecordID: 40, SFID: "001F", New: map[string]any{"name": "new row"}},
		{ID: 9, Op: "delete", RecordID: 40, SFID: "001E", RetryOf: 3},
		{ID: 10, Op: "delete", RecordID: 50, SFID: "001G", RetryOf: 4},
		{ID: 11, Op: "insert", RecordID: 50, New: map[string]any{"name": "new row"}},
		{ID: 12, Op: "delete", RecordID: 60, SFID: "001H", RetryOf: 5},
		{ID: 13, Op: "update", RecordID: 60, New: map[string]any{"name": "no sfid yet"}},
		// A change of the upsert field waits for the insert before it.
		{ID: 14, Op: "insert", RecordID: 70, New: map[string]any{"name": "n", "ext_id__c": "A"}},
		{ID: 15, Op: "update", RecordID: 70, New: map[string]any{"ext_id__c": "B"}},
		{ID: 16, Op: "insert", RecordID: 80, New: map[string]any{"name": "n", "ext_id__c": "C"}},
		{ID: 17, Op: "update", RecordID: 80, New: map[string]any{"name": "m"}},
		// An insert without an upsert value takes the one set after it.
		{ID: 18, Op: "insert", RecordID: 90, New: map[string]any{"name": "n", "ext_id__c": nil}},
		{ID: 19, Op: "update", RecordID: 90, New: map[string]any{"ext_id__c": "X-90"}},
	}, "ext_id__c")
	type got struct {
		record   int
		op, sfid string
		entries  []int64
		deferred bool
	}
	var all []got
	for _, c := range changes {
		all = append(all, got{c.RecordID, c.Op, c.SFID, c.Entries, c.deferTo})
	}
	require.Equal(t, []got{
		{10, "delete", "001A", []int64{1}, false},
		{10, "insert", "", []int64{2, 3}, true},
		{20, "insert", "001B", []int64{4, 5}, false},
		{30, "delete", "001C", []int64{6}, false},
		{30, "insert", "001D", []int64{7}, true},
		{40, "update", "001F", []int64{8}, false},
		{40, "delete", "001E", []int64{9}, true},
		{50, "delete", "001G", []int64{10}, false},
		{50, "insert", "", []int64{11}, true},
		{60, "delete", "001H", []int64{12}, false},
		{60, "update", "", []int64{13}, true},
		{70, "insert", "", []int64{14}, false},
		{70, "update", "", []int64{15}, true},
		{80, "insert", "", []int64{16, 17}, false},
		{90, "insert", "", []int64{18, 19}, false},
	}, all)
}

// Datetimes go to Salesforce in its format from a timestamptz column and
// from a column without a time zone (as in tables kept from Heroku
// Connect), which holds UTC.
func TestDatetimesAreSentAsUTCFromColumnsWithAndWithoutATimeZone(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-27T09:30:00.25+01:00": "2026-11-27T08:30:00.250Z",
		"2026-11-27T09:30:00.25":       "2026-11-27T09:30:00.250Z",
		"2026-11-27T09:30:00":          "2026-11-27T09:30:00.000Z",
		// Local mean time, as Postgres writes Amsterdam's before 1937.
		"1930-05-01T12:19:32+00:19:32": "1930-05-01T12:00:00.000Z",
		"1930-05-01T06:38:50-05:21:10": "1930-05-01T12:00:00.000Z",
		"2026-11-27T09:30:00.25Z":      "2026-11-27T09:30:00.250Z",
	} {
		got, err := sfValue("datetime", in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"next Tuesday", "infinity", "-infinity", "1650-01-01T00:00:00+00:00", "5000-01-01T00:00:00"} {
		_, err := sfValue("datetime", in)
		require.ErrorContains(t, err, "datetime "+in+" is not one Salesforce holds")
	}
	// Dates go as they are, within the years Salesforce holds.
	got, err := sfValue("date", "2026-11-27")
	require.NoError(t, err)
	require.Equal(t, "2026-11-27", got)
	for _, in := range []string{"infinity", "-infinity", "0044-03-15 BC", "1699-12-31", "4001-01-01"} {
		_, err := sfValue("date", in)
		require.ErrorContains(t, err, "date "+in+" is not one Salesforce holds")
	}
	_, err = sfValue("time", "24:00:00")
	require.ErrorContains(t, err, "time 24:00:00 is not a time of day Salesforce holds")
}
