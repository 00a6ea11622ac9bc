package soql

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	customFieldHint = " If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
	customRelHint   = " If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
	customObjHint   = " If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
)

func TestErrorsCarrySalesforceCodeAndCaretMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		query   string
		code    string
		message string
	}{
		{"UnknownFieldPointsAtColumn", "SELECT Id, Foo FROM Account", "INVALID_FIELD",
			"\nSELECT Id, Foo FROM Account\n           ^\nERROR at Row:1:Column:12\nNo such column 'Foo' on entity 'Account'." + customFieldHint},
		{"UnknownFirstField", "SELECT Foo FROM Account", "INVALID_FIELD",
			"\nSELECT Foo FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Foo' on entity 'Account'." + customFieldHint},
		{"MisspelledKeyword", "SELECT Id FORM Account", "MALFORMED_QUERY",
			"\nSELECT Id FORM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'"},
		{"UnknownObject", "SELECT Id FROM Foo", "INVALID_TYPE",
			"\nSELECT Id FROM Foo\n               ^\nERROR at Row:1:Column:16\nsObject type 'Foo' is not supported." + customObjHint},
		{"UnknownRelationship", "SELECT Id, Acount.Name FROM Contact", "INVALID_FIELD",
			"\nSELECT Id, Acount.Name FROM Contact\n           ^\nERROR at Row:1:Column:12\nDidn't understand relationship 'Acount' in field path." + customRelHint},
		{"FieldNameUsedAsRelationship", "SELECT Name.Foo FROM Account", "INVALID_FIELD",
			"\nSELECT Name.Foo FROM Account\n       ^\nERROR at Row:1:Column:8\nDidn't understand relationship 'Name' in field path." + customRelHint},
		{"UnknownFieldOnParentNamesParentEntity", "SELECT Owner.Nam FROM Account", "INVALID_FIELD",
			"\nSELECT Owner.Nam FROM Account\n       ^\nERROR at Row:1:Column:8\nNo such column 'Nam' on entity 'User'." + customFieldHint},
		{"ExcerptIsFourTokensEitherSide", "select Id, Name from Account where Name = 3999", "INVALID_FIELD",
			"\nName from Account where Name = 3999\n                        ^\nERROR at Row:1:Column:36\nvalue of filter criterion for field 'Name' must be of type string and should be enclosed in quotes"},
		{"ExcerptStaysOnTheErrorRow", "SELECT Id\nFROM Account\nWHERE Nme = 'x'", "INVALID_FIELD",
			"\nWHERE Nme = 'x'\n      ^\nERROR at Row:3:Column:7\nNo such column 'Nme' on entity 'Account'." + customFieldHint},
		{"UnexpectedEnd", "SELECT Id FROM", "MALFORMED_QUERY",
			"\nSELECT Id FROM\n              ^\nERROR at Row:1:Column:15\nunexpected token: '<EOF>'"},
		{"UnknownOrderByField", "SELECT Id FROM Account ORDER BY Nope DESC", "INVALID_FIELD",
			"\nFROM Account ORDER BY Nope DESC\n                      ^\nERROR at Row:1:Column:33\nNo such column 'Nope' on entity 'Account'." + customFieldHint},
		{"DateLiteralOnDateTimeField", "SELECT Id FROM Account WHERE CreatedDate > 2024-01-31", "INVALID_FIELD",
			"\nId FROM Account WHERE CreatedDate > 2024-01-31\n                      ^\nERROR at Row:1:Column:30\nvalue of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed in quotes"},
		{"IncludesOnPicklist", "SELECT Id FROM Account WHERE Industry INCLUDES ('a')", "INVALID_FIELD",
			"\nId FROM Account WHERE Industry INCLUDES ('a')\n                      ^\nERROR at Row:1:Column:30\nincludes or excludes operator only valid on multipicklist field"},
		{"MalformedID", "SELECT Id FROM Account WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR",
			"\nId FROM Account WHERE Id = 'abc'\n                      ^\nERROR at Row:1:Column:30\ninvalid ID field: abc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := bindError(t, tc.query)
			require.Equal(t, tc.code, err.Code)
			require.Equal(t, tc.message, err.Message)
			require.Equal(t, tc.code+": "+tc.message, err.Error())
		})
	}
}

func TestLiteralOfWrongTypeIsInvalidField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		where, field, typ string
		quoted            bool
	}{
		{"Name = 5", "Name", "string", true},
		{"Name = true", "Name", "string", true},
		{"Name = TODAY", "Name", "string", true},
		{"Tags__c = 1", "Tags__c", "string", true},
		{"OwnerId = 5", "OwnerId", "string", true},
		{"Active__c = 'true'", "Active__c", "boolean", false},
		{"Active__c = 1", "Active__c", "boolean", false},
		{"AnnualRevenue = '5'", "AnnualRevenue", "double", false},
		{"NumberOfEmployees IN (1, '2')", "NumberOfEmployees", "integer", false},
		{"CreatedDate = '2024-01-01T00:00:00Z'", "CreatedDate", "dateTime", false},
		{"LastActivityDate = 2024-01-31T00:00:00Z", "LastActivityDate", "date", false},
		{"LastActivityDate = 5", "LastActivityDate", "date", false},
		{"OpensAt__c = TODAY", "OpensAt__c", "time", false},
		{"AnnualRevenue LIKE '5%'", "AnnualRevenue", "double", false},
		{"Name LIKE 5", "Name", "string", true},
	}
	for _, tc := range cases {
		t.Run(tc.where, func(t *testing.T) {
			t.Parallel()
			err := bindError(t, "SELECT Id FROM Account WHERE "+tc.where)
			require.Equal(t, "INVALID_FIELD", err.Code)
			how := "should not be enclosed in quotes"
			if tc.quoted {
				how = "should be enclosed in quotes"
			}
			require.Contains(t, err.Message, "\nvalue of filter criterion for field '"+tc.field+"' must be of type "+tc.typ+" and "+how)
		})
	}
}

func TestParseRejectsMalformedQueries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		query, token string
	}{
		{"", "<EOF>"},
		{"Id FROM Account", "Id"},
		{"SELECT FROM Account", "FROM"},
		{"SELECT Id, FROM Account", "FROM"},
		{"SELECT Id Account", "Account"},
		{"SELECT Id FROM Account WHERE", "<EOF>"},
		{"SELECT Id FROM Account WHERE Name", "<EOF>"},
		{"SELECT Id FROM Account WHERE Name = ", "<EOF>"},
		{"SELECT Id FROM Account WHERE Name = foo", "foo"},
		{"SELECT Id FROM Account WHERE (Name = 'a'", "<EOF>"},
		{"SELECT Id FROM Account WHERE Name = 'a')", ")"},
		{"SELECT Id FROM Account WHERE Name IN 'a'", "'a'"},
		{"SELECT Id FROM Account WHERE Name IN ()", ")"},
		{"SELECT Id FROM Account WHERE Name NOT LIKE 'a'", "LIKE"},
		{"SELECT Id FROM Account WHERE Name LIKE null", "null"},
		{"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS", "<EOF>"},
		{"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:x", "x"},
		{"SELECT Id FROM Account WHERE CreatedDate = LAST_N_DAYS:-1", "-1"},
		{"SELECT Id FROM Account ORDER Name", "Name"},
		{"SELECT Id FROM Account ORDER BY Name NULLS", "<EOF>"},
		{"SELECT Id FROM Account LIMIT", "<EOF>"},
		{"SELECT Id FROM Account LIMIT -1", "-1"},
		{"SELECT Id FROM Account LIMIT 1.5", "1.5"},
		{"SELECT Id FROM Account LIMIT 'x'", "'x'"},
		{"SELECT Id FROM Account OFFSET 5 LIMIT 1", "LIMIT"},
		{"SELECT Id FROM Account GROUP Name", "Name"},
		{"SELECT Id FROM Account GROUP BY Name HAVING", "<EOF>"},
		{"SELECT Id FROM Account HAVING COUNT(Id) > 1", "HAVING"},
		{"SELECT COUNT(), Id FROM Account", ","},
		{"SELECT Id, COUNT() FROM Account", "COUNT"},
		{"SELECT COUNT(Id FROM Account", "FROM"},
		{"SELECT COUNT(Id), COUNT() FROM Account", "COUNT"},
		{"SELECT Id, (SELECT Id FROM Contacts FROM Account", "FROM"},
		{"SELECT Id, (SELECT Id FROM Contacts LIMIT 1", "<EOF>"},
		{"SELECT COUNT(), (SELECT Id FROM Contacts) FROM Account", ","},
		{"SELECT Id FROM Account.Name", "Account.Name"},
		{"SELECT Id FROM Account WHERE Name = 'a' AND", "<EOF>"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tc.query)
			require.Error(t, err)
			var se *Error
			require.ErrorAs(t, err, &se)
			require.Equal(t, "MALFORMED_QUERY", se.Code)
			require.Contains(t, se.Message, "\nunexpected token: '"+tc.token+"'")
		})
	}
}

func TestLexerErrorsUseSalesforceWording(t *testing.T) {
	t.Parallel()
	cases := []struct {
		query, message string
	}{
		// The lexer's position is 0-based; Salesforce prints it as the column and draws the caret one
		// character to its left.
		{"SELECT Id FROM Account WHERE Name = 'abc", "\nAccount WHERE Name = 'abc\n" + spaces(24) + "^\nERROR at Row:1:Column:40\nline 1:40 no viable alternative at character '<EOF>'"},
		{"SELECT Id FROM Account WHERE Name # 'a'", "\nFROM Account WHERE Name \n" + spaces(23) + "^\nERROR at Row:1:Column:34\nline 1:34 no viable alternative at character '#'"},
		{"SELECT Id FROM Account WHERE CreatedDate > 2016-07-31T04:17:54", "\nAccount WHERE CreatedDate > 2016-07-31T04:17:54\n" + spaces(46) + "^\nERROR at Row:1:Column:62\nline 1:62 no viable alternative at character '<EOF>'"},
		{`SELECT Id FROM Account WHERE Name = 'a\qb'`, "\nAccount WHERE Name = \n" + spaces(21) + "^\nERROR at Row:1:Column:37\nInvalid string literal 'a\\qb'. Illegal character sequence '\\q' in string literal."},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tc.query)
			var se *Error
			require.ErrorAs(t, err, &se)
			require.Equal(t, "MALFORMED_QUERY", se.Code)
			require.Equal(t, tc.message, se.Message)
		})
	}
}

func TestInvalidCalendarDateIsMalformed(t *testing.T) {
	t.Parallel()
	err := bindError(t, "SELECT Id FROM Account WHERE LastActivityDate = 2024-02-30")
	require.Equal(t, "MALFORMED_QUERY", err.Code)
	require.Contains(t, err.Message, "must be a valid date")
}

func spaces(n int) string { return strings.Repeat(" ", n) }
