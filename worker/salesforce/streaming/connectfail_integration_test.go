package streaming_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/worker/salesforce/streaming"
)

// A /meta/connect that Salesforce keeps answering unsuccessfully (the
// org's daily event delivery allocation is spent, the server is too busy)
// was sent again at once, without any wait: the client spun, thousands of
// long-poll requests a second, for as long as the condition lasted. Once
// it ends, events flow again.
func TestAConnectSalesforceKeepsRefusingIsRetriedWithBackoffNotInATightLoop(t *testing.T) {
	b := setup(t)
	require.NoError(t, b.stream.Subscribe(t.Context(), accountChannel, streaming.ReplayTip))
	b.run(t)
	b.waitSubscribed(t)

	b.sim.FailStreamingConnects("403::Organization total events daily limit exceeded")
	b.sim.ResetCalls()
	time.Sleep(time.Second)
	var posts int64
	for k, v := range b.sim.Calls() {
		if strings.HasPrefix(k, "POST /cometd/") {
			posts += v
		}
	}
	require.LessOrEqual(t, posts, int64(20), "CometD requests in the second the connects failed")

	b.sim.FailStreamingConnects("")
	id := b.createAccount(t, "After the refusals")
	for {
		ev := b.nextEvent(t)
		if len(ev.Header.RecordIDs) == 1 && ev.Header.RecordIDs[0] == id {
			break
		}
	}
}
