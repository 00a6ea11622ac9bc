package streaming_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
	"github.com/pgforce/pgforce/worker/salesforce/streaming"
)

const accountChannel = "/data/AccountChangeEvent"

type subscribed struct {
	channel string
	from    int64
}

type testBundle struct {
	sim    *sim.Server
	rest   *salesforce.Client
	stream *streaming.Client
	subs   chan subscribed
	events chan *streaming.Event
	// handlerErr, when set, is returned by the handler for the next event.
	mu         sync.Mutex
	handlerErr error
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	s := simtest.Start(t, func(cfg *sim.Config) { cfg.ConnectTimeout = 500 * time.Millisecond })
	b := &testBundle{sim: s, rest: simtest.Client(t, s), subs: make(chan subscribed, 16), events: make(chan *streaming.Event, 1000)}
	var err error
	b.stream, err = streaming.New(streaming.Config{
		Auth:        b.rest.TokenSource(),
		APIVersion:  b.rest.APIVersion(),
		OnSubscribe: func(ch string, from int64) { b.subs <- subscribed{ch, from} },
		MaxBackoff:  200 * time.Millisecond,
	})
	require.NoError(t, err)
	return b
}

func (b *testBundle) handler(_ context.Context, ev *streaming.Event) error {
	b.mu.Lock()
	err := b.handlerErr
	b.handlerErr = nil
	b.mu.Unlock()
	if err != nil {
		return err
	}
	b.events <- ev
	return nil
}

// run starts Run; stop cancels it and returns its error, and done is closed
// when Run has returned by itself or otherwise.
func (b *testBundle) run(t *testing.T) (stop func() error, done <-chan struct{}, result func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	finished := make(chan struct{})
	var runErr error
	client := b.stream
	go func() {
		defer close(finished)
		runErr = client.Run(ctx, b.handler)
	}()
	result = func() error { <-finished; return runErr }
	stop = func() error {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop, finished, result
}

func (b *testBundle) waitSubscribed(t *testing.T) subscribed {
	t.Helper()
	select {
	case s := <-b.subs:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no subscription")
	}
	return subscribed{}
}

func (b *testBundle) nextEvent(t *testing.T) *streaming.Event {
	t.Helper()
	select {
	case ev := <-b.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return nil
}

func (b *testBundle) noEvent(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-b.events:
		t.Fatalf("unexpected event %d %s %v", ev.ReplayID, ev.Header.ChangeType, ev.Header.RecordIDs)
	case <-time.After(d):
	}
}

func (b *testBundle) createAccount(t *testing.T, name string) string {
	t.Helper()
	res, err := b.rest.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Account", map[string]any{"Name": name, "Amount__c": 12.5})})
	require.NoError(t, err)
	require.True(t, res[0].Success, "%+v", res[0])
	return res[0].ID
}

func TestStreamingDeliversChangeEventsWithTheirHeader(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	b.run(t)
	require.Equal(t, subscribed{accountChannel, streaming.ReplayTip}, b.waitSubscribed(t))

	id := b.createAccount(t, "Streamed")
	ev := b.nextEvent(t)
	require.Equal(t, accountChannel, ev.Channel)
	require.Equal(t, "Account", ev.Header.EntityName)
	require.Equal(t, streaming.ChangeCreate, ev.Header.ChangeType)
	require.Equal(t, []string{id}, ev.Header.RecordIDs)
	require.Equal(t, "pgforce", ev.Header.OriginClient(), "Sforce-Call-Options travels into changeOrigin")
	require.NotEmpty(t, ev.Header.TransactionKey)
	require.EqualValues(t, 1, ev.Header.SequenceNumber)
	require.WithinDuration(t, time.Now(), ev.Header.CommitTime(), time.Minute)
	require.Equal(t, "Streamed", ev.Fields["Name"])
	require.Positive(t, ev.ReplayID)

	require.NoError(t, b.sim.UIEdit(t.Context(), "Account", id, map[string]any{"Note__c": "from the UI"}))
	upd := b.nextEvent(t)
	require.Equal(t, streaming.ChangeUpdate, upd.Header.ChangeType)
	require.Equal(t, "", upd.Header.OriginClient(), "UI edits carry no client")
	require.Contains(t, upd.Header.ChangedFields, "Note__c")
	require.NotContains(t, upd.Fields, "Name", "an update carries only changed fields")
	require.Greater(t, upd.ReplayID, ev.ReplayID)
	// The client counts an event processed once the handler has returned,
	// which is just after the event reached the test.
	require.Eventually(t, func() bool {
		got, ok := b.stream.LastReplayID(accountChannel)
		return ok && got == upd.ReplayID
	}, 5*time.Second, 10*time.Millisecond, "the last replay id processed")
}

func TestStreamingReplayAllDeliversRetainedEventsInOrder(t *testing.T) {
	b := setup(t)
	for i := range 3 {
		b.createAccount(t, fmt.Sprintf("Before %d", i))
	}
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayAll))
	b.run(t)
	var last int64
	for i := range 3 {
		ev := b.nextEvent(t)
		require.Equal(t, fmt.Sprintf("Before %d", i), ev.Fields["Name"])
		require.Greater(t, ev.ReplayID, last)
		last = ev.ReplayID
	}
}

func TestStreamingResumesAfterAStoredReplayID(t *testing.T) {
	b := setup(t)
	b.createAccount(t, "one")
	b.createAccount(t, "two")
	b.createAccount(t, "three")
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayAll))
	stop, _, _ := b.run(t)
	first := b.nextEvent(t)
	b.nextEvent(t)
	b.nextEvent(t)
	require.ErrorIs(t, stop(), context.Canceled)

	// A new client resuming after the first event gets the second and third.
	c2, err := streaming.New(streaming.Config{Auth: b.rest.TokenSource()})
	require.NoError(t, err)
	require.NoError(t, c2.Subscribe(t.Context(), accountChannel, first.ReplayID))
	b.stream = c2
	b.run(t)
	require.Equal(t, "two", b.nextEvent(t).Fields["Name"])
	require.Equal(t, "three", b.nextEvent(t).Fields["Name"])
	b.noEvent(t, 300*time.Millisecond)
}

func TestStreamingResubscribesFromLastReplayAfterUnknownClient(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	b.run(t)
	b.waitSubscribed(t)
	b.createAccount(t, "a")
	b.createAccount(t, "b")
	b.nextEvent(t)
	second := b.nextEvent(t)

	b.sim.DropStreamingSessions()
	resub := b.waitSubscribed(t)
	require.Equal(t, subscribed{accountChannel, second.ReplayID}, resub, "re-subscribed from the last processed replay id")

	b.createAccount(t, "c")
	third := b.nextEvent(t)
	require.Equal(t, "c", third.Fields["Name"])
	b.noEvent(t, 300*time.Millisecond)
}

func TestStreamingRefreshesTokenAndHandshakesAgainAfterSessionExpiry(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	_, done, result := b.run(t)
	b.waitSubscribed(t)
	before, err := b.rest.TokenSource().Token(t.Context())
	require.NoError(t, err)

	b.sim.ExpireSessions()
	// The streaming client notices on its next connect, refreshes the token,
	// handshakes again and re-subscribes, before any REST call could have
	// refreshed the shared token for it.
	require.Equal(t, subscribed{accountChannel, streaming.ReplayTip}, b.waitSubscribed(t))
	b.createAccount(t, "after expiry")
	ev := b.nextEvent(t)
	require.Equal(t, "after expiry", ev.Fields["Name"])
	after, err := b.rest.TokenSource().Token(t.Context())
	require.NoError(t, err)
	require.NotEqual(t, before.AccessToken, after.AccessToken)
	select {
	case <-done:
		t.Fatalf("Run ended: %v", result())
	default:
	}
}

func TestStreamingReportsAnExpiredReplayIDAsATypedError(t *testing.T) {
	b := setup(t)
	b.createAccount(t, "old")
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayAll))
	stop, _, _ := b.run(t)
	old := b.nextEvent(t)
	require.ErrorIs(t, stop(), context.Canceled)

	b.sim.ExpireReplay(0)
	c2, err := streaming.New(streaming.Config{Auth: b.rest.TokenSource()})
	require.NoError(t, err)
	require.NoError(t, c2.Subscribe(t.Context(), accountChannel, old.ReplayID-1))
	err = c2.Run(t.Context(), func(context.Context, *streaming.Event) error { return nil })
	var re *streaming.ReplayIDError
	require.ErrorAs(t, err, &re)
	require.Equal(t, accountChannel, re.Channel)
	require.Equal(t, old.ReplayID-1, re.ReplayID)
}

func TestStreamingDeliversGapEventsWithoutFields(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	b.run(t)
	b.waitSubscribed(t)
	id := b.createAccount(t, "gappy")
	b.nextEvent(t)

	require.NoError(t, b.sim.ForceGap("Account", streaming.ChangeGapUpdate, id))
	gap := b.nextEvent(t)
	require.True(t, gap.Header.IsGap())
	require.Equal(t, streaming.ChangeGapUpdate, gap.Header.ChangeType)
	require.Equal(t, []string{id}, gap.Header.RecordIDs)
	require.Empty(t, gap.Fields)

	require.NoError(t, b.sim.ForceGap("Account", streaming.ChangeGapOverflow))
	require.Equal(t, streaming.ChangeGapOverflow, b.nextEvent(t).Header.ChangeType)
}

func TestStreamingHandlerErrorStopsRunAndLeavesTheEventUnprocessed(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	_, done, result := b.run(t)
	b.waitSubscribed(t)
	b.createAccount(t, "ok")
	okEv := b.nextEvent(t)

	boom := errors.New("postgres is down")
	b.mu.Lock()
	b.handlerErr = boom
	b.mu.Unlock()
	b.createAccount(t, "fails")
	select {
	case <-done:
		require.ErrorIs(t, result(), boom)
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept going after the handler failed")
	}
	last, ok := b.stream.LastReplayID(accountChannel)
	require.True(t, ok)
	require.Equal(t, okEv.ReplayID, last, "the failed event does not count as processed")
}

func TestStreamingAllChangeEventsChannelLabelsEventsWithIt(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), "/data/ChangeEvents", streaming.ReplayTip))
	b.run(t)
	b.waitSubscribed(t)
	b.createAccount(t, "all")
	ev := b.nextEvent(t)
	require.Equal(t, "/data/ChangeEvents", ev.Channel)
	require.Equal(t, "Account", ev.Header.EntityName)
}

func TestStreamingUnsubscribeStopsDelivery(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	b.run(t)
	b.waitSubscribed(t)
	b.createAccount(t, "seen")
	b.nextEvent(t)
	require.NoError(t, b.stream.Unsubscribe(t.Context(), accountChannel))
	b.createAccount(t, "unseen")
	b.noEvent(t, time.Second)
}

func TestStreamingUnknownChannelIsATypedSubscribeError(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), "/data/NoSuchThingChangeEvent", streaming.ReplayTip))
	err := b.stream.Run(t.Context(), b.handler)
	var se *streaming.SubscribeError
	require.ErrorAs(t, err, &se)
	require.Equal(t, "/data/NoSuchThingChangeEvent", se.Channel)
}

func TestStreamingStopsCleanlyWhenTheContextEnds(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	stop, _, _ := b.run(t)
	b.waitSubscribed(t)
	start := time.Now()
	require.ErrorIs(t, stop(), context.Canceled)
	require.Less(t, time.Since(start), 3*time.Second, "a held long poll does not delay shutdown")
}

func TestStreamingSubscribeWhileRunningAddsAChannel(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	b.run(t)
	b.waitSubscribed(t)

	require.NoError(t, b.stream.Subscribe(t.Context(), "/data/ContactChangeEvent", streaming.ReplayTip))
	require.Equal(t, subscribed{"/data/ContactChangeEvent", streaming.ReplayTip}, b.waitSubscribed(t))
	res, err := b.rest.Create(t.Context(), []salesforce.Record{salesforce.NewRecord("Contact", map[string]any{"LastName": "Lovelace", "FirstName": "Ada"})})
	require.NoError(t, err)
	require.True(t, res[0].Success, "%+v", res[0])
	ev := b.nextEvent(t)
	require.Equal(t, "/data/ContactChangeEvent", ev.Channel)
	require.Equal(t, "Contact", ev.Header.EntityName)
	name, ok := ev.Fields["Name"].(map[string]any)
	require.True(t, ok, "compound Name is nested: %v", ev.Fields)
	require.Equal(t, "Lovelace", name["LastName"])

	require.ErrorAs(t, b.stream.Subscribe(t.Context(), "/data/MissingChangeEvent", streaming.ReplayTip), new(*streaming.SubscribeError),
		"a live session reports a refused subscription at once")
}

func TestStreamingRecoversFromDroppedConnectionsAndServerErrors(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	_, done, result := b.run(t)
	b.waitSubscribed(t)
	b.createAccount(t, "before")
	before := b.nextEvent(t)

	b.sim.Inject(sim.Fault{Path: "/cometd/", Reset: true, Count: 3})
	b.sim.Inject(sim.Fault{Path: "/cometd/", Status: 503, Count: 3})
	b.createAccount(t, "during")
	during := b.nextEvent(t)
	require.Equal(t, "during", during.Fields["Name"])
	require.Greater(t, during.ReplayID, before.ReplayID)
	b.createAccount(t, "after")
	require.Equal(t, "after", b.nextEvent(t).Fields["Name"])
	b.noEvent(t, 300*time.Millisecond)
	select {
	case <-done:
		t.Fatalf("Run ended: %v", result())
	default:
	}
}
