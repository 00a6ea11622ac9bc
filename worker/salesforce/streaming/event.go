package streaming

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Change types of a CDC event header.
const (
	ChangeCreate      = "CREATE"
	ChangeUpdate      = "UPDATE"
	ChangeDelete      = "DELETE"
	ChangeUndelete    = "UNDELETE"
	ChangeGapCreate   = "GAP_CREATE"
	ChangeGapUpdate   = "GAP_UPDATE"
	ChangeGapDelete   = "GAP_DELETE"
	ChangeGapUndelete = "GAP_UNDELETE"
	ChangeGapOverflow = "GAP_OVERFLOW"
)

// ChangeEventHeader is the ChangeEventHeader of a CDC event.
type ChangeEventHeader struct {
	EntityName      string   `json:"entityName"`
	RecordIDs       []string `json:"recordIds"`
	ChangeType      string   `json:"changeType"`
	ChangeOrigin    string   `json:"changeOrigin"`
	TransactionKey  string   `json:"transactionKey"`
	SequenceNumber  int64    `json:"sequenceNumber"`
	CommitTimestamp int64    `json:"commitTimestamp"` // epoch milliseconds
	CommitNumber    int64    `json:"commitNumber"`
	CommitUser      string   `json:"commitUser"`
	ChangedFields   []string `json:"changedFields"`
	// NulledFields and DiffFields are sent by the Pub/Sub API; CometD
	// payloads usually lack them.
	NulledFields []string `json:"nulledFields"`
	DiffFields   []string `json:"diffFields"`
}

// IsGap reports whether the event is a gap event (GAP_* incl. GAP_OVERFLOW),
// which carries no field values: the records must be re-read.
func (h ChangeEventHeader) IsGap() bool { return strings.HasPrefix(h.ChangeType, "GAP_") }

// CommitTime returns CommitTimestamp as a time.
func (h ChangeEventHeader) CommitTime() time.Time { return time.UnixMilli(h.CommitTimestamp).UTC() }

// OriginClient returns the client=… part of changeOrigin
// ("com/salesforce/api/rest/62.0;client=pgforce" gives "pgforce"), which is
// the Sforce-Call-Options client of the call that made the change.
func (h ChangeEventHeader) OriginClient() string {
	for _, part := range strings.Split(h.ChangeOrigin, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "client="); ok {
			return v
		}
	}
	return ""
}

// Event is one message delivered on a subscribed channel.
type Event struct {
	// Channel is the subscription the event arrived on.
	Channel  string
	ReplayID int64
	Schema   string
	// Header is set for Change Data Capture events (zero otherwise).
	Header ChangeEventHeader
	// Fields holds the payload's record fields (everything except
	// ChangeEventHeader), numbers as json.Number and compound fields as
	// map[string]any.
	Fields map[string]any
	// Payload is the raw payload JSON.
	Payload json.RawMessage
}

// parseEvent reads the data member of a delivered message:
// {"schema":…, "payload":{…}, "event":{"replayId":…}}.
func parseEvent(channel string, data json.RawMessage) (*Event, error) {
	var w struct {
		Schema  string          `json:"schema"`
		Payload json.RawMessage `json:"payload"`
		Event   struct {
			ReplayID json.Number `json:"replayId"`
		} `json:"event"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("streaming: event on %s: %w", channel, err)
	}
	ev := &Event{Channel: channel, Schema: w.Schema, Payload: w.Payload}
	if w.Event.ReplayID == "" {
		return nil, fmt.Errorf("streaming: event on %s has no replayId", channel)
	}
	id, err := w.Event.ReplayID.Int64()
	if err != nil {
		return nil, fmt.Errorf("streaming: event on %s: replayId %q: %w", channel, w.Event.ReplayID, err)
	}
	ev.ReplayID = id
	if len(w.Payload) == 0 || string(w.Payload) == "null" {
		return ev, nil
	}
	pdec := json.NewDecoder(bytes.NewReader(w.Payload))
	pdec.UseNumber()
	var fields map[string]any
	if err := pdec.Decode(&fields); err != nil {
		return nil, fmt.Errorf("streaming: event %d on %s: payload: %w", id, channel, err)
	}
	if hdr, ok := fields["ChangeEventHeader"]; ok {
		b, _ := json.Marshal(hdr)
		hdec := json.NewDecoder(bytes.NewReader(b))
		hdec.UseNumber()
		if err := hdec.Decode(&ev.Header); err != nil {
			return nil, fmt.Errorf("streaming: event %d on %s: ChangeEventHeader: %w", id, channel, err)
		}
		delete(fields, "ChangeEventHeader")
	}
	ev.Fields = fields
	return ev, nil
}
