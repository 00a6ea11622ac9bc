package sim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

func (b *bundle) countAll(t *testing.T, soql string) json.Number {
	t.Helper()
	return b.do("GET", "queryAll?q="+url.QueryEscape(soql), nil).object(t)["totalSize"].(json.Number)
}

func (b *bundle) count(t *testing.T, soql string) json.Number {
	t.Helper()
	return b.do("GET", "query?q="+url.QueryEscape(soql), nil).object(t)["totalSize"].(json.Number)
}

// A Contact deleted with its Account, brought back on its own, moved to
// another Account and then deleted on its own is no record the first
// Account's delete took with it any more: undeleting that Account must not
// bring the Contact back (Salesforce restores only what the parent's delete
// deleted).
func TestUndeletingAnAccountLeavesAContactDeletedOnItsOwnSinceInTheRecycleBin(t *testing.T) {
	b := setup(t)
	acc := b.create("Account", map[string]any{"Name": "First"})
	other := b.create("Account", map[string]any{"Name": "Second"})
	con := b.create("Contact", map[string]any{"LastName": "Mover", "AccountId": acc})
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+acc, nil).status)
	require.Equal(t, json.Number("0"), b.count(t, "SELECT Id FROM Contact WHERE Id = '"+con+"'"), "deleted with its account")

	require.NoError(t, b.srv.Undelete(t.Context(), "Contact", con))
	require.Equal(t, http.StatusNoContent, b.do("PATCH", "sobjects/Contact/"+con, map[string]any{"AccountId": other}).status)
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Contact/"+con, nil).status)

	require.NoError(t, b.srv.Undelete(t.Context(), "Account", acc))
	require.Equal(t, json.Number("0"), b.count(t, "SELECT Id FROM Contact WHERE Id = '"+con+"'"),
		"the contact, deleted on its own from another account, stays in the recycle bin")
}

// Hard-deleting an Account that is in the recycle bin purges the Contacts
// its delete took with it too: left in the recycle bin they named a record
// that no longer exists, and an undelete brought back a Contact whose
// AccountId points at nothing.
func TestHardDeletingARecycledAccountPurgesTheContactsDeletedWithIt(t *testing.T) {
	b := setup(t)
	acc := b.create("Account", map[string]any{"Name": "Parent"})
	con := b.create("Contact", map[string]any{"LastName": "Child", "AccountId": acc})
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+acc, nil).status)
	res := bulkBackend{b.srv}.Ingest(t.Context(), "hardDelete", "Account", "", []bulkRecord{{"Id": {Value: acc}}})
	require.Nil(t, res[0].Err)
	require.Equal(t, json.Number("0"), b.countAll(t, "SELECT Id FROM Account WHERE Id = '"+acc+"'"))
	require.Equal(t, json.Number("0"), b.countAll(t, "SELECT Id FROM Contact WHERE Id = '"+con+"'"),
		"the contact deleted with the account is purged with it")
}

// Deleting Accounts deletes the Contacts of each, found through the index
// of cascade-delete lookups (see BenchmarkDeletingAccountsWithTheirContacts
// for what that saves).
func TestDeletingAccountsDeletesTheContactsOfEach(t *testing.T) {
	b := setup(t)
	accs := seedAccountsWithContacts(t, b.srv, 50, 1000)
	res := bulkBackend{b.srv}.Ingest(t.Context(), "delete", "Account", "", idRecords(accs[:25]))
	require.Nil(t, res[0].Err)
	require.Equal(t, json.Number("500"), b.count(t, "SELECT COUNT() FROM Contact"), "the contacts of the other 25 accounts stay")
}

// seedAccountsWithContacts seeds n Accounts and m Contacts spread over
// them, and returns the Accounts' Ids.
func seedAccountsWithContacts(tb testing.TB, s *Server, n, m int) []string {
	_, err := s.Seed(context.Background(), "Account", n, func(int) map[string]any { return map[string]any{"Name": "A"} })
	require.NoError(tb, err)
	var accs []string
	for _, r := range s.store.tables[s.cat.Object("Account")].rows {
		accs = append(accs, r.id())
	}
	_, err = s.Seed(context.Background(), "Contact", m, func(i int) map[string]any {
		return map[string]any{"LastName": "C", "AccountId": accs[i%len(accs)]}
	})
	require.NoError(tb, err)
	return accs
}

// idRecords are Bulk records naming ids, for a delete.
func idRecords(ids []string) []bulkRecord {
	recs := make([]bulkRecord, 0, len(ids))
	for _, id := range ids {
		recs = append(recs, bulkRecord{"Id": {Value: id}})
	}
	return recs
}
