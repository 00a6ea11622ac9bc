package sql_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// applicationRole creates a login-less role, unique to the test's database,
// that may use and write salesforce.account and nothing of pgforce's but
// its schema, as an application's role would; it is dropped at cleanup.
func (b *testBundle) applicationRole(t *testing.T) string {
	t.Helper()
	role := b.db.Name + "_app"
	b.exec(t, fmt.Sprintf(`CREATE ROLE %[1]s;
		GRANT USAGE ON SCHEMA salesforce, pgforce TO %[1]s;
		GRANT CREATE ON SCHEMA public TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON salesforce.account TO %[1]s;
		GRANT USAGE ON SEQUENCE salesforce.account_id_seq TO %[1]s`, role))
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = b.conn.Exec(ctx, "RESET ROLE")
		_, _ = b.conn.Exec(ctx, fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE %[1]s", role))
	})
	return role
}

// The capture functions run as their owner, so an application's role
// captures with no right on pgforce.outbox; but a role that could attach
// them to a table of its own would queue a delete of any Salesforce record
// it names, which the worker would carry out.
func TestApplicationRolesCaptureWithoutRightsOnTheOutboxButCannotAttachCaptureToTablesOfTheirOwn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mapAccount(t, "read_write")
	role := b.applicationRole(t)

	b.exec(t, "SET ROLE "+role)
	b.exec(t, `INSERT INTO salesforce.account (name) VALUES ('Acme')`)
	b.exec(t, `CREATE TABLE public.forged (id integer, sfid varchar(18), name text, industry text, annualrevenue numeric)`)
	b.refused(t, fmt.Sprintf("permission denied for function pgforce._capture_%d", id), "",
		fmt.Sprintf(`CREATE TRIGGER forge AFTER DELETE ON public.forged REFERENCING OLD TABLE AS pgforce_old
			FOR EACH STATEMENT EXECUTE FUNCTION pgforce._capture_%d()`, id))
	b.refused(t, fmt.Sprintf("permission denied for function pgforce._capture_update_%d", id), "",
		fmt.Sprintf(`CREATE TRIGGER forge AFTER UPDATE ON public.forged REFERENCING OLD TABLE AS pgforce_old NEW TABLE AS pgforce_new
			FOR EACH STATEMENT EXECUTE FUNCTION pgforce._capture_update_%d()`, id))
	b.refused(t, "permission denied for table outbox", "", `INSERT INTO pgforce.outbox (mapping_id, op, record_id, sfid) VALUES (1, 'delete', 1, '001000000000000001')`)
	b.exec(t, "RESET ROLE")

	entries := b.outbox(t)
	require.Len(t, entries, 1)
	require.Equal(t, "insert", entries[0].Op)
}
