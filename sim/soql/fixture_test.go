package soql

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCatalog is a small schema in the shape the simulator's store exposes: objects with fields, and
// reference fields carrying their relationship names.
type testCatalog map[string][]FieldInfo

var catalog = testCatalog{
	"Account": {
		{Name: "Id", Type: "id"},
		{Name: "Name", Type: "string"},
		{Name: "Industry", Type: "picklist"},
		{Name: "AnnualRevenue", Type: "currency"},
		{Name: "NumberOfEmployees", Type: "int"},
		{Name: "Active__c", Type: "boolean"},
		{Name: "CreatedDate", Type: "datetime"},
		{Name: "LastActivityDate", Type: "date"},
		{Name: "OpensAt__c", Type: "time"},
		{Name: "Tags__c", Type: "multipicklist"},
		{Name: "OwnerId", Type: "reference", ReferenceTo: "User", RelationshipName: "Owner"},
		{Name: "ParentId", Type: "reference", ReferenceTo: "Account", RelationshipName: "Parent"},
	},
	"Contact": {
		{Name: "Id", Type: "id"},
		{Name: "LastName", Type: "string"},
		{Name: "Email", Type: "email"},
		{Name: "AccountId", Type: "reference", ReferenceTo: "Account", RelationshipName: "Account"},
	},
	"User": {
		{Name: "Id", Type: "id"},
		{Name: "Name", Type: "string"},
		{Name: "ManagerId", Type: "reference", ReferenceTo: "User", RelationshipName: "Manager"},
	},
	"Invoice__c": {
		{Name: "Id", Type: "id"},
		{Name: "Name", Type: "string"},
		{Name: "Account__c", Type: "reference", ReferenceTo: "Account", RelationshipName: "Account__r"},
	},
}

func (c testCatalog) ObjectName(name string) (string, bool) {
	for obj := range c {
		if strings.EqualFold(obj, name) {
			return obj, true
		}
	}
	return "", false
}

func (c testCatalog) Field(object, field string) (FieldInfo, bool) {
	for _, f := range c[object] {
		if strings.EqualFold(f.Name, field) {
			return f, true
		}
	}
	return FieldInfo{}, false
}

func (c testCatalog) Relationship(object, rel string) (FieldInfo, bool) {
	for _, f := range c[object] {
		if f.RelationshipName != "" && strings.EqualFold(f.RelationshipName, rel) {
			return f, true
		}
	}
	return FieldInfo{}, false
}

// rec is a stored record: canonical field values plus the parent records its reference fields point to.
type rec struct {
	vals    map[string]any
	parents map[string]*rec
}

func (r *rec) Value(field string) any { return r.vals[field] }

func (r *rec) Parent(field string) Row {
	if p := r.parents[field]; p != nil {
		return p
	}
	return nil
}

func num(s string) json.Number { return json.Number(s) }

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func instant(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func clock(s string) time.Time {
	t, err := time.Parse("15:04:05", s)
	if err != nil {
		panic(err)
	}
	return time.Date(0, 1, 1, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// testNow is a Wednesday, so "this week" runs from Sunday 2024-03-10 to Saturday 2024-03-16.
var testNow = time.Date(2024, 3, 13, 15, 30, 0, 0, time.UTC)

// accounts returns a fixed set of accounts with owners, keyed by Name for readable expectations.
func accounts() []*rec {
	boss := &rec{vals: map[string]any{"Id": "005000000000001AAA", "Name": "Boss"}}
	alice := &rec{vals: map[string]any{"Id": "005000000000002AAA", "Name": "Alice", "ManagerId": "005000000000001AAA"},
		parents: map[string]*rec{"ManagerId": boss}}
	bob := &rec{vals: map[string]any{"Id": "005000000000003AAA", "Name": "Bob"}}
	acme := &rec{vals: map[string]any{
		"Id": "001000000000001AAA", "Name": "Acme", "Industry": "Energy", "AnnualRevenue": num("1000000.50"),
		"NumberOfEmployees": num("120"), "Active__c": true, "CreatedDate": instant("2024-03-13T09:00:00Z"),
		"LastActivityDate": day("2024-03-12"), "OpensAt__c": clock("08:00:00"), "Tags__c": "Gold;Partner",
		"OwnerId": "005000000000002AAA",
	}, parents: map[string]*rec{"OwnerId": alice}}
	globex := &rec{vals: map[string]any{
		"Id": "001000000000002AAA", "Name": "Globex", "Industry": "Media", "AnnualRevenue": num("1e6"),
		"NumberOfEmployees": num("8"), "Active__c": false, "CreatedDate": instant("2024-03-01T00:00:00Z"),
		"LastActivityDate": day("2024-02-20"), "OpensAt__c": clock("09:30:00"), "Tags__c": "Silver",
		"OwnerId": "005000000000003AAA", "ParentId": "001000000000001AAA",
	}, parents: map[string]*rec{"OwnerId": bob, "ParentId": acme}}
	initech := &rec{vals: map[string]any{
		"Id": "001000000000003AAA", "Name": "Initech_Labs", "AnnualRevenue": num("-5.25"),
		"NumberOfEmployees": num("0"), "Active__c": true, "CreatedDate": instant("2023-12-31T23:59:59.999Z"),
		"Tags__c": "Gold",
	}}
	umbrella := &rec{vals: map[string]any{
		"Id": "001000000000004AAA", "Name": "Umbrella 100%", "Industry": "", "CreatedDate": instant("2024-03-14T00:00:00Z"),
		"LastActivityDate": day("2024-03-13"),
	}}
	return []*rec{acme, globex, initech, umbrella}
}

// bind parses and binds q against the test catalog, failing the test on error.
func bind(t testing.TB, q string) *Query {
	t.Helper()
	parsed, err := Parse(q)
	require.NoError(t, err, q)
	require.NoError(t, parsed.Bind(catalog), q)
	return parsed
}

// matchingNames returns the Names of the accounts the query matches at testNow, in fixture order.
func matchingNames(t *testing.T, q string) []string {
	t.Helper()
	query := bind(t, q)
	names := []string{}
	for _, r := range accounts() {
		if query.Match(r, testNow) {
			names = append(names, r.vals["Name"].(string))
		}
	}
	return names
}

// bindError parses and binds q and returns the *Error it must fail with.
func bindError(t *testing.T, q string) *Error {
	t.Helper()
	parsed, err := Parse(q)
	if err == nil {
		err = parsed.Bind(catalog)
	}
	require.Error(t, err, q)
	var se *Error
	require.ErrorAs(t, err, &se, q)
	return se
}
