package streaming_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
	"github.com/pgforce/pgforce/worker/salesforce"
	"github.com/pgforce/pgforce/worker/salesforce/internal/simtest"
	"github.com/pgforce/pgforce/worker/salesforce/streaming"
)

// Salesforce takes at most 32,768 bytes in one CometD POST and answers
// more with 413 Maximum Request Size Exceeded (Streaming API Developer
// Guide, "How the Client Connects"). The subscriptions re-sent after a
// handshake must not go in one POST when there are many channels: they
// never got through, and the session was retried for ever.
func TestStreamingSubscribesManyChannelsWithinTheRequestSizeLimit(t *testing.T) {
	const n = 200
	var objs []string
	channels := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("Subscription_Size_Probe_Object_%03d__c", i)
		objs = append(objs, `{"name":"`+name+`","fields":[]}`)
		channels[i] = "/data/" + strings.TrimSuffix(name, "__c") + "__ChangeEvent"
	}
	schema, err := sim.ParseSchema([]byte(`{"objects":[` + strings.Join(objs, ",") + `]}`))
	require.NoError(t, err)
	s, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{Schema: schema, ConnectTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	rest := simtest.Client(t, s)

	b := &testBundle{sim: s, rest: rest, subs: make(chan subscribed, n), events: make(chan *streaming.Event, 10)}
	b.stream, err = streaming.New(streaming.Config{
		Auth:        rest.TokenSource(),
		APIVersion:  rest.APIVersion(),
		OnSubscribe: func(ch string, from int64) { b.subs <- subscribed{ch, from} },
		MaxBackoff:  200 * time.Millisecond,
	})
	require.NoError(t, err)
	for _, ch := range channels {
		require.NoError(t, b.stream.Subscribe(t.Context(), ch, streaming.ReplayTip))
	}
	b.run(t)
	got := map[string]bool{}
	for range n {
		got[b.waitSubscribed(t).channel] = true
	}
	require.Len(t, got, n)

	// And the session works: a change on the last channel's object arrives.
	res, err := rest.Create(t.Context(), []salesforce.Record{salesforce.NewRecord(fmt.Sprintf("Subscription_Size_Probe_Object_%03d__c", n-1), map[string]any{"Name": "x"})})
	require.NoError(t, err)
	require.True(t, res[0].Success, "%+v", res[0])
	ev := b.nextEvent(t)
	require.Equal(t, channels[n-1], ev.Channel)
}
