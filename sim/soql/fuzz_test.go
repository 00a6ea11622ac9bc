package soql

import (
	"errors"
	"testing"
)

// FuzzParse checks that no input makes Parse, Bind or the evaluator panic, and that every failure is
// an *Error with a Salesforce error code.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"SELECT Id, Name, Owner.Name FROM Account WHERE Name LIKE 'a\\_%' AND (AnnualRevenue >= 1e3 OR NOT Active__c = true) ORDER BY Name DESC NULLS LAST LIMIT 10 OFFSET 5",
		"SELECT COUNT() FROM Account WHERE CreatedDate = LAST_N_DAYS:30",
		"SELECT Id FROM Account WHERE CreatedDate > 2024-01-31T10:00:00.123-08:00 AND LastActivityDate < 2024-01-31",
		"SELECT Id FROM Account WHERE Tags__c INCLUDES ('a;b', 'c') AND Industry NOT IN ('x', null)",
		"SELECT Id FROM Account WHERE OpensAt__c = 10:00:00Z",
		"select id from account where id = '001000000000001'",
		"SELECT Id FROM Account WHERE Name = 'unterminated",
		"SELECT Id\nFROM Account\nWHERE Nme = 'é'",
		"SELECT Id, (SELECT Id FROM Contacts WHERE Name LIKE 'a%' ORDER BY Name LIMIT 2 OFFSET 1) FROM Account LIMIT 1",
		"SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Name != null) AND Id NOT IN (SELECT Id FROM Account)",
		"SELECT Industry i, COUNT(Id), MAX(AnnualRevenue) m FROM Account GROUP BY Industry HAVING COUNT(Id) > 1 AND MAX(AnnualRevenue) < 5 ORDER BY COUNT(Id) DESC",
		"SELECT Id FROM Account USING SCOPE everything WHERE CreatedDate = THIS_FISCAL_QUARTER WITH SECURITY_ENFORCED FOR VIEW",
		"",
	} {
		f.Add(seed)
	}
	rows := accounts()
	f.Fuzz(func(t *testing.T, query string) {
		q, err := Parse(query)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Code != CodeMalformedQuery {
				t.Fatalf("Parse(%q) returned %v, want a MALFORMED_QUERY *Error", query, err)
			}
			return
		}
		if err := q.Bind(catalog); err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Code == "" {
				t.Fatalf("Bind(%q) returned %v, want an *Error", query, err)
			}
			return
		}
		for _, r := range rows {
			q.Match(r, testNow)
			for _, p := range q.Fields() {
				p.Resolve(r)
			}
		}
		q.Less(rows[0], rows[1])
		q.Less(rows[3], rows[2])
	})
}
