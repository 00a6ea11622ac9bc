package soql

import (
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBindResolvesNamesToCanonicalCase(t *testing.T) {
	t.Parallel()
	q := bind(t, "select ID, name, owner.NAME, OWNER.manager.name, Parent.Owner.Name, account.Industry from ACCOUNT")
	require.Equal(t, "Account", q.Object())
	require.False(t, q.IsCount())
	fields := q.Fields()
	require.Len(t, fields, 6)

	require.Equal(t, Path{Field: "Id", FieldInfo: FieldInfo{Name: "Id", Type: "id"}}, fields[0])
	require.Equal(t, "Name", fields[1].Field)
	require.Empty(t, fields[1].Relationships)

	require.Equal(t, []string{"OwnerId"}, fields[2].Relationships)
	require.Equal(t, []string{"Owner"}, fields[2].Names)
	require.Equal(t, []string{"User"}, fields[2].Objects)
	require.Equal(t, "Name", fields[2].Field)
	require.Equal(t, "Owner.Name", fields[2].String())

	require.Equal(t, []string{"OwnerId", "ManagerId"}, fields[3].Relationships)
	require.Equal(t, []string{"Owner", "Manager"}, fields[3].Names)
	require.Equal(t, "Owner.Manager.Name", fields[3].String())

	require.Equal(t, []string{"ParentId", "OwnerId"}, fields[4].Relationships)
	require.Equal(t, []string{"Account", "User"}, fields[4].Objects)

	// "Account.Industry" in FROM Account names the queried object itself.
	require.Equal(t, "Industry", fields[5].Field)
	require.Empty(t, fields[5].Relationships)
	require.Equal(t, "picklist", fields[5].FieldInfo.Type)
}

func TestCustomRelationshipResolvesThroughDoubleUnderscoreR(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT Name, Account__r.Owner.Name FROM invoice__c WHERE Account__r.Name = 'Acme'")
	require.Equal(t, "Invoice__c", q.Object())
	p := q.Fields()[1]
	require.Equal(t, []string{"Account__c", "OwnerId"}, p.Relationships)
	require.Equal(t, []string{"Account__r", "Owner"}, p.Names)

	acme := accounts()[0]
	inv := &rec{vals: map[string]any{"Name": "INV-1", "Account__c": acme.vals["Id"]}, parents: map[string]*rec{"Account__c": acme}}
	require.Equal(t, "Alice", p.Resolve(inv))
	require.True(t, q.Match(inv, testNow))

	orphan := &rec{vals: map[string]any{"Name": "INV-2"}}
	require.Nil(t, p.Resolve(orphan))
	require.False(t, q.Match(orphan, testNow))
}

func TestFiveLevelParentPathResolves(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT Contact.Account.Parent.Parent.Owner.Manager.Name FROM Contact")
	p := q.Fields()[0]
	require.Equal(t, []string{"AccountId", "ParentId", "ParentId", "OwnerId", "ManagerId"}, p.Relationships)

	boss := &rec{vals: map[string]any{"Name": "Boss"}}
	owner := &rec{vals: map[string]any{}, parents: map[string]*rec{"ManagerId": boss}}
	top := &rec{vals: map[string]any{}, parents: map[string]*rec{"OwnerId": owner}}
	mid := &rec{vals: map[string]any{}, parents: map[string]*rec{"ParentId": top}}
	acct := &rec{vals: map[string]any{}, parents: map[string]*rec{"ParentId": mid}}
	contact := &rec{vals: map[string]any{}, parents: map[string]*rec{"AccountId": acct}}
	require.Equal(t, "Boss", p.Resolve(contact))
	delete(owner.parents, "ManagerId")
	require.Nil(t, p.Resolve(contact))
}

func TestCountQuery(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT COUNT() FROM Account WHERE Active__c = true")
	require.True(t, q.IsCount())
	require.Empty(t, q.Fields())
	n := 0
	for _, r := range accounts() {
		if q.Match(r, testNow) {
			n++
		}
	}
	require.Equal(t, 2, n)

	// A field may be called Count; only COUNT followed by ( is the aggregate.
	cat := testCatalog{"Thing__c": {{Name: "Count", Type: "int"}}}
	parsed, err := Parse("SELECT count FROM Thing__c")
	require.NoError(t, err)
	require.NoError(t, parsed.Bind(cat))
	require.False(t, parsed.IsCount())
	require.Equal(t, "Count", parsed.Fields()[0].Field)
}

func TestLimitAndOffset(t *testing.T) {
	t.Parallel()
	cases := []struct {
		query     string
		limit     int
		hasLimit  bool
		offset    int
		hasOrder  bool
		hasFilter bool
	}{
		{"SELECT Id FROM Account", 0, false, 0, false, false},
		{"SELECT Id FROM Account LIMIT 0", 0, true, 0, false, false},
		{"SELECT Id FROM Account LIMIT 50000", 50000, true, 0, false, false},
		{"SELECT Id FROM Account OFFSET 2000", 0, false, 2000, false, false},
		{"SELECT Id FROM Account WHERE Name != null ORDER BY Name LIMIT 10 OFFSET 20", 10, true, 20, true, true},
		{"select id from account order by name desc nulls first limit 1 offset 0", 1, true, 0, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			q := bind(t, tc.query)
			n, ok := q.Limit()
			require.Equal(t, tc.limit, n)
			require.Equal(t, tc.hasLimit, ok)
			require.Equal(t, tc.offset, q.Offset())
			require.Equal(t, tc.hasOrder, q.HasOrder())
			require.Equal(t, tc.hasFilter, q.HasWhere())
		})
	}
}

func TestOrderBySortsLikeSalesforce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		orderBy string
		want    []string
	}{
		{"Name", []string{"Acme", "Globex", "Initech_Labs", "Umbrella 100%"}},
		{"Name DESC", []string{"Umbrella 100%", "Initech_Labs", "Globex", "Acme"}},
		{"Industry", []string{"Initech_Labs", "Umbrella 100%", "Acme", "Globex"}},      // ASC: nulls first
		{"Industry DESC", []string{"Globex", "Acme", "Initech_Labs", "Umbrella 100%"}}, // DESC: nulls last
		{"Industry ASC NULLS LAST", []string{"Acme", "Globex", "Initech_Labs", "Umbrella 100%"}},
		{"Industry DESC NULLS FIRST", []string{"Initech_Labs", "Umbrella 100%", "Globex", "Acme"}},
		{"AnnualRevenue", []string{"Umbrella 100%", "Initech_Labs", "Globex", "Acme"}}, // 1e6 < 1000000.50
		{"NumberOfEmployees DESC", []string{"Acme", "Globex", "Initech_Labs", "Umbrella 100%"}},
		{"Active__c, Name DESC", []string{"Umbrella 100%", "Globex", "Initech_Labs", "Acme"}}, // null, false, true
		{"CreatedDate DESC", []string{"Umbrella 100%", "Acme", "Globex", "Initech_Labs"}},
		{"LastActivityDate NULLS LAST", []string{"Globex", "Acme", "Umbrella 100%", "Initech_Labs"}},
		{"OpensAt__c DESC", []string{"Globex", "Acme", "Initech_Labs", "Umbrella 100%"}},
		{"Owner.Name NULLS LAST, Name DESC", []string{"Acme", "Globex", "Umbrella 100%", "Initech_Labs"}},
		{"Tags__c, Name", []string{"Umbrella 100%", "Initech_Labs", "Acme", "Globex"}},
		{"Id DESC", []string{"Umbrella 100%", "Initech_Labs", "Globex", "Acme"}},
	}
	for _, tc := range cases {
		t.Run(tc.orderBy, func(t *testing.T) {
			t.Parallel()
			q := bind(t, "SELECT Id FROM Account ORDER BY "+tc.orderBy)
			rows := accounts()
			sort.SliceStable(rows, func(i, j int) bool { return q.Less(rows[i], rows[j]) })
			var got []string
			for _, r := range rows {
				got = append(got, r.vals["Name"].(string))
			}
			require.Equal(t, tc.want, got)
			// Less is a strict order: no row is less than itself.
			for _, r := range rows {
				require.False(t, q.Less(r, r))
			}
		})
	}
}

func TestLessIsFalseWithoutOrderBy(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT Id FROM Account")
	rows := accounts()
	require.False(t, q.HasOrder())
	require.False(t, q.Less(rows[0], rows[1]))
	require.False(t, q.Less(rows[1], rows[0]))
}

func TestBoundQueryIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	q := bind(t, "SELECT Id FROM Account WHERE Name IN ('a','b','c','d','e','f','g','h','acme') AND CreatedDate = THIS_WEEK ORDER BY Name")
	rows := accounts()
	done := make(chan []string, 4)
	for range 4 {
		go func() {
			var got []string
			for range 100 {
				got = got[:0]
				for _, r := range rows {
					if q.Match(r, testNow) {
						got = append(got, r.vals["Name"].(string))
					}
				}
			}
			done <- slices.Clone(got)
		}()
	}
	for range 4 {
		require.Equal(t, []string{"Acme"}, <-done)
	}
}

func TestMatchBeforeBindPanicsWithReason(t *testing.T) {
	t.Parallel()
	q, err := Parse("SELECT Id FROM Account WHERE Name = 'x'")
	require.NoError(t, err)
	require.PanicsWithValue(t, "soql: Match called on a query without a successful Bind", func() {
		q.Match(accounts()[0], testNow)
	})
}
