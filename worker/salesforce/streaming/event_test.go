package streaming

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseEventReadsTheChangeEventHeaderAndKeepsNumbersExact(t *testing.T) {
	data := json.RawMessage(`{"schema":"Jx8Hz9ElkIUaBf-heF1ShA",
	  "payload":{"ChangeEventHeader":{"entityName":"Account","recordIds":["0015f00002JUXA8AAP"],
	    "changeType":"UPDATE","changeOrigin":"com/salesforce/api/rest/62.0;client=pgforce",
	    "transactionKey":"00006bec","sequenceNumber":1,"commitTimestamp":1714156685000,
	    "commitNumber":1100670838951,"commitUser":"0055f000005mc66AAA",
	    "changedFields":["Name","LastModifiedDate","BillingAddress.City"]},
	    "Name":"Acme 2","AnnualRevenue":123456789012345.67,"BillingAddress":{"City":"Oakland"}},
	  "event":{"replayId":123456}}`)
	ev, err := parseEvent("/data/AccountChangeEvent", data)
	require.NoError(t, err)
	require.Equal(t, int64(123456), ev.ReplayID)
	require.Equal(t, "/data/AccountChangeEvent", ev.Channel)
	h := ev.Header
	require.Equal(t, "Account", h.EntityName)
	require.Equal(t, []string{"0015f00002JUXA8AAP"}, h.RecordIDs)
	require.Equal(t, ChangeUpdate, h.ChangeType)
	require.Equal(t, "pgforce", h.OriginClient())
	require.Equal(t, int64(1100670838951), h.CommitNumber)
	require.Equal(t, time.UnixMilli(1714156685000).UTC(), h.CommitTime())
	require.False(t, h.IsGap())
	require.Equal(t, []string{"Name", "LastModifiedDate", "BillingAddress.City"}, h.ChangedFields)
	require.NotContains(t, ev.Fields, "ChangeEventHeader")
	require.Equal(t, json.Number("123456789012345.67"), ev.Fields["AnnualRevenue"])
	require.Equal(t, map[string]any{"City": "Oakland"}, ev.Fields["BillingAddress"])
}

func TestParseEventRecognisesGapEventsAndRejectsMissingReplayID(t *testing.T) {
	ev, err := parseEvent("/data/ChangeEvents", json.RawMessage(`{"payload":{"ChangeEventHeader":{"entityName":"Account","changeType":"GAP_OVERFLOW","recordIds":["001*"]}},"event":{"replayId":7}}`))
	require.NoError(t, err)
	require.True(t, ev.Header.IsGap())
	require.Equal(t, ChangeGapOverflow, ev.Header.ChangeType)
	require.Empty(t, ev.Fields)
	require.Equal(t, "", ev.Header.OriginClient())

	_, err = parseEvent("/data/ChangeEvents", json.RawMessage(`{"payload":{}}`))
	require.Error(t, err)
}
