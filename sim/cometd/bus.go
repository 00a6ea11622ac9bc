// Package cometd is the simulator's Streaming API: a replayable change-event bus and a Bayeux long-polling
// server that delivers the bus's events the way Salesforce delivers Change Data Capture over CometD.
//
// The bus keeps every event for a retention window (Salesforce: 72 hours) so that subscribers can replay from
// a stored replay id; the server holds /meta/connect requests open and wakes them the moment an event they
// subscribed to is published.
package cometd

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultRetention is how long Salesforce keeps change events for replay.
const DefaultRetention = 72 * time.Hour

// Event is one published change event. Payload is the event's "payload" object (ChangeEventHeader + fields);
// Entity is the object's API name (Account, Foo__c) used to route to /data/<Entity>ChangeEvent.
type Event struct {
	ReplayID    int64
	Entity      string
	Payload     map[string]any
	CreatedDate time.Time
}

// stored is the compact form of an event: the "data" object of the delivered message is encoded once at
// publish time, so delivery is a byte copy and hundreds of thousands of retained events cost little more
// than their JSON text.
type stored struct {
	id      int64
	created int64 // unix nanoseconds
	entity  int32 // index into Bus.entities
	data    []byte
}

type entityInfo struct {
	name    string
	channel string // /data/<Entity>ChangeEvent
	schema  string
}

// Bus is a replayable, in-memory event log shared by all subscribers.
type Bus struct {
	mu        sync.Mutex
	retention time.Duration
	clock     func() time.Time
	events    []stored // ascending by id
	lastID    int64    // last assigned replay id (0 = none yet)
	floor     int64    // replay ids below floor are gone (ExpireBefore)
	entities  []entityInfo
	entityIdx map[string]int32
	wake      chan struct{} // closed and replaced on every publish
}

// NewBus returns an empty bus. retention <= 0 means DefaultRetention; a nil clock means time.Now.
func NewBus(retention time.Duration, clock func() time.Time) *Bus {
	if retention <= 0 {
		retention = DefaultRetention
	}
	if clock == nil {
		clock = time.Now
	}
	return &Bus{retention: retention, clock: clock, entityIdx: map[string]int32{}, wake: make(chan struct{})}
}

// ChannelFor returns the per-entity CDC channel: Account -> /data/AccountChangeEvent,
// Foo__c -> /data/Foo__ChangeEvent (Salesforce drops the "c" of the custom suffix).
func ChannelFor(entity string) string {
	if strings.HasSuffix(entity, "__c") {
		return "/data/" + strings.TrimSuffix(entity, "c") + "ChangeEvent"
	}
	return "/data/" + entity + "ChangeEvent"
}

// ChangeEventName is the change event entity of an object as global describe lists it: Account ->
// AccountChangeEvent, Foo__c -> Foo__ChangeEvent.
func ChangeEventName(entity string) string { return strings.TrimPrefix(ChannelFor(entity), "/data/") }

// AllChangeEvents is the channel that carries every selected entity's change events.
const AllChangeEvents = "/data/ChangeEvents"

// EntityForChannel is the inverse of ChannelFor. all is true for /data/ChangeEvents; ok is false for anything
// that is not a change-event channel.
func EntityForChannel(channel string) (entity string, all, ok bool) {
	if channel == AllChangeEvents {
		return "", true, true
	}
	name, found := strings.CutPrefix(channel, "/data/")
	if !found {
		return "", false, false
	}
	name, found = strings.CutSuffix(name, "ChangeEvent")
	if !found || name == "" || strings.Contains(name, "/") {
		return "", false, false
	}
	if strings.HasSuffix(name, "__") {
		name += "c"
	}
	return name, false, true
}

// schemaID is a stable, Salesforce-looking schema id (22 characters of URL-safe base64) per entity.
func schemaID(entity string) string {
	sum := sha256.Sum256([]byte("cdc-schema:" + entity))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Publish assigns the next replay id, stores the event and wakes every held connect. The payload must be
// JSON-encodable (it is what the change-event builder produced); anything else is a programming error.
func (b *Bus) Publish(entity string, payload map[string]any) int64 {
	body, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("cometd: change event payload for %s is not JSON-encodable: %v", entity, err))
	}
	return b.PublishRaw(RawEvent{Entity: entity, Payload: body})
}

// RawEvent is an event whose payload object (ChangeEventHeader + fields) is already JSON-encoded.
type RawEvent struct {
	Entity  string
	Payload []byte
}

// PublishRaw publishes events in order under consecutive replay ids with one wake-up of the held connects,
// and returns the last replay id. Payloads must be valid JSON objects; encoding them is the caller's work,
// so it can happen outside any lock the caller holds. Each payload is copied into its stored event, so the
// caller may reuse their memory once PublishRaw returns.
func (b *Bus) PublishRaw(events ...RawEvent) int64 {
	if len(events) == 0 {
		return b.Latest()
	}
	uuids := make([]string, len(events))
	for i := range uuids {
		uuids[i] = newUUID()
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	b.expireLocked(now)
	for i, ev := range events {
		idx, ok := b.entityIdx[ev.Entity]
		if !ok {
			idx = int32(len(b.entities))
			b.entities = append(b.entities, entityInfo{name: ev.Entity, channel: ChannelFor(ev.Entity), schema: schemaID(ev.Entity)})
			b.entityIdx[ev.Entity] = idx
		}
		b.lastID++
		id := b.lastID
		uuid := uuids[i]
		data := make([]byte, 0, len(ev.Payload)+len(uuid)+120) // room for the envelope, so append never reallocates
		data = append(data, `{"schema":`...)
		data = strconv.AppendQuote(data, b.entities[idx].schema)
		data = append(data, `,"payload":`...)
		data = append(data, ev.Payload...)
		data = append(data, `,"event":{"EventUuid":"`...)
		data = append(data, uuid...)
		data = append(data, `","replayId":`...)
		data = strconv.AppendInt(data, id, 10)
		data = append(data, "}}"...)
		b.events = append(b.events, stored{id: id, created: now.UnixNano(), entity: idx, data: data})
	}
	close(b.wake)
	b.wake = make(chan struct{})
	return b.lastID
}

// ExpireBefore drops every event whose replay id is below replayID, as if retention had passed for them.
func (b *Bus) ExpireBefore(replayID int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if replayID > b.floor {
		b.floor = replayID
	}
	b.dropFrontLocked(func(e *stored) bool { return e.id < b.floor })
}

// Reset forgets all events and restarts replay ids at 1. Held connects are woken so they notice.
func (b *Bus) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = nil
	b.lastID = 0
	b.floor = 0
	close(b.wake)
	b.wake = make(chan struct{})
}

// Latest is the last replay id assigned (0 when nothing was published).
func (b *Bus) Latest() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastID
}

// Len is the number of retained events.
func (b *Bus) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.clock())
	return len(b.events)
}

// Since returns up to limit retained events with replay id greater than after, decoded. It is meant for
// other transports (and tests); the CometD server reads the compact form directly.
func (b *Bus) Since(after int64, limit int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.clock())
	var out []Event
	for i := b.searchLocked(after + 1); i < len(b.events) && len(out) < limit; i++ {
		e := &b.events[i]
		var data struct {
			Payload map[string]any `json:"payload"`
		}
		d := json.NewDecoder(strings.NewReader(string(e.data)))
		d.UseNumber()
		_ = d.Decode(&data) // we encoded it ourselves
		out = append(out, Event{ReplayID: e.id, Entity: b.entities[e.entity].name, Payload: data.Payload,
			CreatedDate: time.Unix(0, e.created).UTC()})
	}
	return out
}

// expireLocked drops events older than the retention window.
func (b *Bus) expireLocked(now time.Time) {
	cutoff := now.Add(-b.retention).UnixNano()
	b.dropFrontLocked(func(e *stored) bool { return e.created < cutoff })
}

func (b *Bus) dropFrontLocked(drop func(*stored) bool) {
	n := 0
	for n < len(b.events) && drop(&b.events[n]) {
		n++
	}
	if n == 0 {
		return
	}
	for i := 0; i < n; i++ {
		b.events[i].data = nil // let the payload bytes go even while the backing array is shared
	}
	b.events = b.events[n:]
	// Re-slicing keeps the dropped head alive in the backing array; copy once it dominates.
	if cap(b.events) > 1024 && len(b.events) < cap(b.events)/4 {
		b.events = append(make([]stored, 0, len(b.events)*2), b.events...)
	}
}

// searchLocked returns the index of the first retained event with id >= id.
func (b *Bus) searchLocked(id int64) int {
	lo, hi := 0, len(b.events)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b.events[m].id < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// replayStart validates a subscriber's replay request and returns the id after which delivery starts.
// -1: only new events; -2: everything retained; N: events after N, where N must still be retained.
func (b *Bus) replayStart(replay int64) (after int64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked(b.clock())
	switch replay {
	case -1:
		return b.lastID, true
	case -2:
		if len(b.events) == 0 {
			return b.lastID, true
		}
		return b.events[0].id - 1, true
	}
	if replay <= 0 || replay > b.lastID || replay < b.floor {
		return 0, false
	}
	i := b.searchLocked(replay)
	if i == len(b.events) || b.events[i].id != replay {
		return 0, false
	}
	return replay, true
}
