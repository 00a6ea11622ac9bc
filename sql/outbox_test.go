package sql_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The write-back asks, for every row of a batch, whether a newer change of
// it is queued: one probe of outbox_record_idx each. Statistics sampled
// while the outbox held a few hot records must not turn that into a read
// of the whole backlog per row.
func TestOutboxRecordProbesUseTheIndexWhateverTheStatisticsSampled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Analyzed while three records had all the changes...
	b.exec(t, `INSERT INTO pgforce.outbox (mapping_id, op, record_id, new)
		SELECT 1, 'update', i % 3, '{}' FROM generate_series(1, 300) i`)
	b.exec(t, `ANALYZE pgforce.outbox`)
	// ...then a backlog of 50,000 records, before autovacuum looks again.
	b.exec(t, `INSERT INTO pgforce.outbox (mapping_id, op, record_id, new)
		SELECT 1, 'update', i, '{}' FROM generate_series(1, 50000) i`)
	var plan string
	b.scalar(t, &plan, `EXPLAIN (COSTS OFF, FORMAT JSON)
		SELECT u.r, h.busy IS NOT NULL FROM unnest((SELECT array_agg(i) FROM generate_series(1, 2000) i)) u(r)
		LEFT JOIN LATERAL (SELECT true AS busy FROM pgforce.outbox o WHERE o.mapping_id = 1 AND o.record_id = u.r LIMIT 1) h ON true`)
	require.True(t, strings.Contains(plan, "outbox_record_idx"), "the probe reads the index:\n%s", plan)
}
