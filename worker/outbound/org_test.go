package outbound_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A worker holds one org's Salesforce session, so it must send that org's
// changes only: another org's rows in the same database wait for their own
// worker.
func TestWorkerForDefaultOrgSendsOnlyTheDefaultOrgsChanges(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('other', 'other_sf')`)
	var otherID int
	b.scalar(t, &otherID, `INSERT INTO pgforce.mapping (org, sobject, fields, mode)
		VALUES ('other', 'Account', '{Name,Industry,AnnualRevenue,Ext_Id__c}', 'read_write') RETURNING id`)
	b.exec(t, `SELECT pgforce.ensure_table($1, $2)`, otherID, accountColumns)
	b.exec(t, `UPDATE pgforce.mapping SET state = 'synced' WHERE id = $1`, otherID)

	var mine, theirs int
	b.scalar(t, &theirs, `INSERT INTO other_sf.account (name) VALUES ('Other org') RETURNING id`)
	b.scalar(t, &mine, `INSERT INTO salesforce.account (name) VALUES ('Default org') RETURNING id`)

	b.start(t, fastOptions()) // Org empty: the default org
	eventually(t, 10*time.Second, "default org's row sent", func() bool { return b.rowSfid(t, "account", mine) != "" })
	time.Sleep(500 * time.Millisecond)
	var sfid *string
	b.scalar(t, &sfid, `SELECT sfid FROM other_sf.account WHERE id = $1`, theirs)
	require.Nil(t, sfid, "the other org's row is not sent through this org's session")
	var queued int
	b.scalar(t, &queued, `SELECT count(*) FROM pgforce.outbox WHERE mapping_id = $1 AND claimed_at IS NULL`, otherID)
	require.Equal(t, 1, queued, "its change waits, unclaimed, for the other org's worker")
	require.Empty(t, b.sfRecords(t, `SELECT Id FROM Account WHERE Name = 'Other org'`))

	// The other org's own worker sends it.
	opts := fastOptions()
	opts.Org = "other"
	b.start(t, opts)
	eventually(t, 10*time.Second, "other org's row sent by its worker", func() bool {
		var s *string
		b.scalar(t, &s, `SELECT sfid FROM other_sf.account WHERE id = $1`, theirs)
		return s != nil
	})
}

// Each org's worker streams the outbox through a replication slot of its
// own: with one slot per database, the second org's worker found it taken
// and fell back to polling.
func TestTheWorkersOfTwoOrgsBothStreamTheOutbox(t *testing.T) {
	b := setup(t, setupOptions{})
	b.exec(t, `INSERT INTO pgforce.org (name, schema_name) VALUES ('other', 'other_sf')`)
	b.start(t, fastOptions())
	opts := fastOptions()
	opts.Org = "other"
	opts.WorkerID = "other-worker"
	b.start(t, opts)
	eventually(t, 10*time.Second, "both workers streaming", func() bool {
		var modes []string
		b.scalar(t, &modes, `SELECT coalesce(array_agg(feed_mode ORDER BY worker), '{}') FROM pgforce.outbound_worker`)
		return len(modes) == 2 && modes[0] == "logical_replication" && modes[1] == "logical_replication"
	})
	var slots int
	b.scalar(t, &slots, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active`)
	require.Equal(t, 2, slots)
}
