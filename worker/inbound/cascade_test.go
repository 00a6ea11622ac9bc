package inbound_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// Deleting an Account in Salesforce deletes its Contacts (a cascade
// delete): the Contacts' rows are flagged deleted too, streamed or polled.
func TestContactsDeletedWithTheirAccountAreFlaggedDeletedThroughCDC(t *testing.T) {
	testCascade(t, "cdc", false)
}

func TestContactsDeletedWithTheirAccountAreFlaggedDeletedThroughPolling(t *testing.T) {
	testCascade(t, "poll", false)
}

// Undeleting the Account brings its Contacts back too: their rows are no
// longer flagged deleted.
func TestContactsRestoredWithTheirAccountComeBackThroughCDC(t *testing.T) {
	testCascadeUndelete(t, "cdc")
}

func TestContactsRestoredWithTheirAccountComeBackThroughPolling(t *testing.T) {
	testCascadeUndelete(t, "poll")
}

// Under hard_delete the rows go with their records and come back with them.
func TestHardDeletedRowsRestoredWithTheirAccountComeBackThroughCDC(t *testing.T) {
	testCascadeUndeleteHard(t, "cdc")
}

func TestHardDeletedRowsRestoredWithTheirAccountComeBackThroughPolling(t *testing.T) {
	testCascadeUndeleteHard(t, "poll")
}

// testCascade syncs an Account and its Contact (under hard_delete if
// hard), deletes the Account in Salesforce and waits for both rows to
// show it; it returns the env and the two Ids.
func testCascade(t *testing.T, mode string, hard bool) (*env, string, string) {
	e := newEnv(t)
	acc := e.create("Account", map[string]any{"Name": "Parent"})[0]
	con := e.create("Contact", map[string]any{"LastName": "Child", "AccountId": acc})[0]
	am := e.mapping("Account", []string{"Name"}, mode)
	cm := e.mapping("Contact", []string{"LastName", "AccountId"}, mode)
	e.exec(`UPDATE pgforce.mapping SET poll_interval = '10 seconds', hard_delete = $1`, hard)
	e.start()
	e.waitState(am, "synced")
	e.waitState(cm, "synced")
	e.waitValue("account", acc, "name", "Parent")
	e.waitValue("contact", con, "accountid", acc)
	res, err := e.sf.Delete(context.Background(), []string{acc})
	require.NoError(t, err)
	require.NoError(t, res[0].Err())
	if hard {
		e.waitValue("contact", con, "lastname", "<missing>")
		e.waitValue("account", acc, "name", "<missing>")
	} else {
		e.waitValue("account", acc, "isdeleted", "true")
		e.waitValue("contact", con, "isdeleted", "true")
	}
	return e, acc, con
}

func testCascadeUndelete(t *testing.T, mode string) {
	e, acc, con := testCascade(t, mode, false)
	require.NoError(t, e.sim.Undelete(context.Background(), "Account", acc))
	e.waitValue("account", acc, "isdeleted", "false")
	e.waitValue("contact", con, "isdeleted", "false")
}

func testCascadeUndeleteHard(t *testing.T, mode string) {
	e, acc, con := testCascade(t, mode, true)
	require.NoError(t, e.sim.Undelete(context.Background(), "Account", acc))
	e.waitValue("account", acc, "name", "Parent")
	e.waitValue("contact", con, "lastname", "Child")
}
