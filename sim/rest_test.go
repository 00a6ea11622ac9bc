package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestVersionsListNeedsNoAuthAndEndsWithTheConfiguredVersion(t *testing.T) {
	b := setup(t)
	resp, err := http.Get(b.http.URL + "/services/data/")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var versions []map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&versions))
	last := versions[len(versions)-1]
	require.Equal(t, map[string]string{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}, last)
	require.Equal(t, "Summer '24", versions[len(versions)-2]["label"])

	r := b.do("GET", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	m := r.object(t)
	require.Equal(t, "/services/data/v62.0/sobjects", m["sobjects"])
	require.Equal(t, b.http.URL+"/id/"+b.srv.OrgID()+"/"+b.srv.UserID(), m["identity"])
}

func TestDescribeGivesCompleteFieldDescriptors(t *testing.T) {
	b := setup(t)
	r := b.do("GET", "sobjects/Account/describe", nil)
	require.Equal(t, http.StatusOK, r.status)
	d := r.object(t)
	require.Equal(t, "001", d["keyPrefix"])
	fields := map[string]map[string]any{}
	for _, f := range d["fields"].([]any) {
		m := f.(map[string]any)
		fields[m["name"].(string)] = m
	}
	for _, key := range []string{"name", "label", "type", "soapType", "length", "byteLength", "digits", "precision", "scale",
		"nillable", "createable", "updateable", "defaultedOnCreate", "unique", "caseSensitive", "calculated",
		"calculatedFormula", "autoNumber", "externalId", "idLookup", "referenceTo", "relationshipName", "relationshipOrder",
		"cascadeDelete", "restrictedDelete", "polymorphicForeignKey", "namePointing", "picklistValues", "restrictedPicklist",
		"dependentPicklist", "controllerName", "compoundFieldName", "nameField", "filterable", "sortable", "groupable",
		"aggregatable", "htmlFormatted", "encrypted", "mask", "maskType", "extraTypeInfo", "highScaleNumber", "defaultValue",
		"defaultValueFormula", "inlineHelpText", "permissionable", "writeRequiresMasterRead", "deprecatedAndHidden",
		"queryByDistance", "displayLocationInDecimal", "filteredLookupInfo", "referenceTargetField", "custom"} {
		require.Contains(t, fields["Name"], key)
	}
	require.Equal(t, "id", fields["Id"]["type"])
	require.Equal(t, "tns:ID", fields["Id"]["soapType"])
	require.Equal(t, "string", fields["Name"]["type"])
	require.Equal(t, json.Number("255"), fields["Name"]["length"])
	require.Equal(t, json.Number("765"), fields["Name"]["byteLength"])
	require.Equal(t, false, fields["Name"]["nillable"])
	require.Equal(t, "currency", fields["AnnualRevenue"]["type"])
	require.Equal(t, "address", fields["BillingAddress"]["type"])
	require.Equal(t, "BillingAddress", fields["BillingCity"]["compoundFieldName"])
	require.Equal(t, []any{"User"}, fields["OwnerId"]["referenceTo"])
	require.Equal(t, "Owner", fields["OwnerId"]["relationshipName"])
	require.Equal(t, true, fields["External_Id__c"]["externalId"])
	require.Equal(t, true, fields["External_Id__c"]["custom"])
	pick := fields["Industry"]["picklistValues"].([]any)[0].(map[string]any)
	require.Equal(t, map[string]any{"active": true, "defaultValue": false, "label": "Agriculture", "validFor": nil, "value": "Agriculture"}, pick)

	children := map[string]bool{}
	for _, ch := range d["childRelationships"].([]any) {
		m := ch.(map[string]any)
		if m["relationshipName"] != nil {
			children[m["relationshipName"].(string)] = true
		}
	}
	require.True(t, children["Contacts"])
	require.True(t, children["Opportunities"])

	r = b.do("GET", "sobjects/Opportunity/describe", nil)
	for _, f := range r.object(t)["fields"].([]any) {
		m := f.(map[string]any)
		if m["name"] == "StageName" {
			require.Equal(t, true, m["restrictedPicklist"])
		}
	}

	r = b.do("GET", "sobjects", nil)
	var names []string
	for _, o := range r.object(t)["sobjects"].([]any) {
		names = append(names, o.(map[string]any)["name"].(string))
	}
	require.Equal(t, []string{"Account", "AccountChangeEvent", "Case", "CaseChangeEvent", "Contact", "ContactChangeEvent",
		"Invoice__ChangeEvent", "Invoice__c", "Lead", "LeadChangeEvent", "Opportunity", "OpportunityChangeEvent", "User",
		"UserChangeEvent"}, names, "objects and their change event entities, by name")

	require.Equal(t, http.StatusNotFound, b.do("GET", "sobjects/Nope__c/describe", nil).status)
	modified := b.do("GET", "sobjects/Account/describe", nil, "If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	require.Equal(t, http.StatusNotModified, modified.status)
}

func TestCreateReadUpdateDeleteRoundTripsExactValues(t *testing.T) {
	b := setup(t)
	b.clock.Advance(time.Second)
	r := b.do("POST", "sobjects/Account", `{"Name":"Acme","AnnualRevenue":1234567.891234567,"BillingCity":"Oakland","NumberOfEmployees":12}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	created := r.object(t)
	id := created["id"].(string)
	require.Len(t, id, 18)
	require.Equal(t, "001", id[:3])
	require.Equal(t, true, created["success"])
	require.Equal(t, []any{}, created["errors"])

	r = b.do("GET", "sobjects/Account/"+id, nil)
	require.Equal(t, http.StatusOK, r.status)
	rec := r.object(t)
	require.Equal(t, json.Number("1234567.891234567"), rec["AnnualRevenue"], "numbers stay exact")
	require.Equal(t, map[string]any{"type": "Account", "url": "/services/data/v62.0/sobjects/Account/" + id}, rec["attributes"])
	require.Equal(t, "2025-03-01T12:00:01.000+0000", rec["CreatedDate"])
	require.Equal(t, b.srv.UserID(), rec["OwnerId"])
	require.Equal(t, "Oakland", rec["BillingAddress"].(map[string]any)["city"])
	require.Equal(t, false, rec["IsDeleted"])
	require.True(t, strings.HasPrefix(string(r.body), `{"attributes":`), "attributes come first")

	r = b.do("GET", "sobjects/Account/"+id[:15]+"?fields=Name,Industry", nil)
	require.Equal(t, http.StatusOK, r.status, "15-character ids are accepted")
	require.Equal(t, map[string]any{"attributes": rec["attributes"], "Name": "Acme", "Industry": nil}, r.object(t))

	b.clock.Advance(time.Second)
	r = b.do("PATCH", "sobjects/Account/"+strings.ToLower(id[:15]), map[string]any{"Name": "Acme 2"})
	require.Equal(t, http.StatusNotFound, r.status, "15-character ids are case-sensitive")
	r = b.do("PATCH", "sobjects/Account/"+strings.ToLower(id), map[string]any{"Name": "Acme 2", "Industry": "Banking"})
	require.Equal(t, http.StatusNoContent, r.status, string(r.body))
	require.Empty(t, r.body)
	rec2 := b.do("GET", "sobjects/Account/"+id, nil).object(t)
	require.Equal(t, "Acme 2", rec2["Name"])
	require.True(t, strings.HasPrefix(rec2["LastModifiedDate"].(string), "2025-03-01T12:00:02.00"), rec2["LastModifiedDate"])
	require.Equal(t, "2025-03-01T12:00:01.000+0000", rec2["CreatedDate"])

	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+id, nil).status)
	r = b.do("GET", "sobjects/Account/"+id, nil)
	require.Equal(t, http.StatusNotFound, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "NOT_FOUND", code)
	r = b.do("DELETE", "sobjects/Account/"+id, nil)
	require.Equal(t, http.StatusNotFound, r.status)
	code, _ = r.firstError(t)
	require.Equal(t, "ENTITY_IS_DELETED", code)
}

func TestSystemModstampStrictlyIncreasesAcrossWrites(t *testing.T) {
	b := setup(t)
	id := b.create("Account", map[string]any{"Name": "A"})
	first := b.do("GET", "sobjects/Account/"+id, nil).object(t)["SystemModstamp"].(string)
	// The clock does not move, yet the next commit must get a later stamp.
	require.Equal(t, http.StatusNoContent, b.do("PATCH", "sobjects/Account/"+id, map[string]any{"Name": "B"}).status)
	second := b.do("GET", "sobjects/Account/"+id, nil).object(t)["SystemModstamp"].(string)
	require.Greater(t, second, first)
}

func TestContactNameIsDerivedFromFirstAndLastName(t *testing.T) {
	b := setup(t)
	id := b.create("Contact", map[string]any{"FirstName": "Ada", "LastName": "Lovelace", "MailingCity": "London"})
	rec := b.do("GET", "sobjects/Contact/"+id, nil).object(t)
	require.Equal(t, "Ada Lovelace", rec["Name"])
	require.Equal(t, "London", rec["MailingAddress"].(map[string]any)["city"])
	r := b.do("PATCH", "sobjects/Contact/"+id, map[string]any{"Name": "X"})
	require.Equal(t, http.StatusBadRequest, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "INVALID_FIELD_FOR_INSERT_UPDATE", code)
}

func TestWritesFailWithSalesforceErrorCodes(t *testing.T) {
	b := setup(t)
	acct := b.create("Account", map[string]any{"Name": "Parent", "External_Id__c": "E-1"})
	gone := b.create("Account", map[string]any{"Name": "Gone"})
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+gone, nil).status)
	cases := []struct {
		name, method, path string
		body               string
		status             int
		code, message      string
		fields             []any
	}{
		{"required field", "POST", "sobjects/Account", `{"Industry":"Banking"}`, 400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Name]", []any{"Name"}},
		{"several required fields", "POST", "sobjects/Opportunity", `{"Name":"O"}`, 400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [StageName, CloseDate]", []any{"StageName", "CloseDate"}},
		{"too long", "POST", "sobjects/Account", `{"Name":"` + strings.Repeat("x", 256) + `"}`, 400, "STRING_TOO_LONG", "Name: data value too large: " + strings.Repeat("x", 255) + " (max length=255)", []any{"Name"}},
		{"restricted picklist", "POST", "sobjects/Opportunity", `{"Name":"O","StageName":"Dreaming","CloseDate":"2025-04-01"}`, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Stage: bad value for restricted picklist field: Dreaming", []any{"StageName"}},
		{"validation rule", "POST", "sobjects/Invoice__c", `{"Name":"I","Amount__c":-5}`, 400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Amount must not be negative", []any{"Amount__c"}},
		{"duplicate unique value", "POST", "sobjects/Account", `{"Name":"Dup","External_Id__c":"e-1"}`, 400, "DUPLICATE_VALUE", "duplicate value found: External_Id__c duplicates value on record with id: " + acct, []any{"External_Id__c"}},
		{"read-only field", "POST", "sobjects/Account", `{"Name":"A","CreatedDate":"2020-01-01T00:00:00Z"}`, 400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create fields: CreatedDate. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", []any{"CreatedDate"}},
		{"malformed lookup", "POST", "sobjects/Contact", `{"LastName":"L","AccountId":"not-an-id"}`, 400, "MALFORMED_ID", "Account ID: id value of incorrect type: not-an-id", []any{"AccountId"}},
		{"missing lookup target", "POST", "sobjects/Contact", `{"LastName":"L","AccountId":"001R00000000099AAA"}`, 400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []any{"AccountId"}},
		{"deleted lookup target", "POST", "sobjects/Contact", `{"LastName":"L","AccountId":"` + gone + `"}`, 400, "ENTITY_IS_DELETED", "entity is deleted", []any{"AccountId"}},
		{"unknown field", "POST", "sobjects/Account", `{"Name":"A","Bogus__c":1}`, 400, "INVALID_FIELD", "No such column 'Bogus__c' on sobject of type Account", nil},
		{"bad JSON", "POST", "sobjects/Account", `{"Name":`, 400, "JSON_PARSER_ERROR", "", nil},
		{"wrong JSON type", "POST", "sobjects/Account", `{"Name":"A","NumberOfEmployees":"many"}`, 400, "JSON_PARSER_ERROR", "", []any{"NumberOfEmployees"}},
		{"malformed id in path", "PATCH", "sobjects/Account/001R0000000!!!!AAA", `{}`, 400, "MALFORMED_ID", "", nil},
		{"unknown record", "PATCH", "sobjects/Account/001R00000000099AAA", `{"Name":"x"}`, 404, "NOT_FOUND", "The requested resource does not exist", nil},
		{"unknown object in query", "GET", "query?q=" + url.QueryEscape("SELECT Id FROM Nope"), ``, 400, "INVALID_TYPE", "", nil},
		// REST "Create a Record" documents this answer for a body naming the Id (in any letter case).
		{"Id in insert", "POST", "sobjects/Account", `{"Name":"A","Id":"` + acct + `"}`, 400, "INVALID_FIELD", "The Id field should not be specified in the sobject data.", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := b.do(tc.method, tc.path, body)
			require.Equal(t, tc.status, r.status, string(r.body))
			arr := r.json(t).([]any)
			e := arr[0].(map[string]any)
			require.Equal(t, tc.code, e["errorCode"])
			if tc.message != "" {
				require.Equal(t, tc.message, e["message"])
			}
			if tc.fields != nil {
				require.Equal(t, tc.fields, e["fields"])
			}
		})
	}
}

func TestUpsertByExternalIDAnswers201Then200And300OnDuplicates(t *testing.T) {
	b := setup(t)
	r := b.do("PATCH", "sobjects/Account/External_Id__c/X-1", map[string]any{"Name": "First"})
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	first := r.object(t)
	require.Equal(t, true, first["created"])
	require.Equal(t, []any{}, first["errors"])

	r = b.do("PATCH", "sobjects/Account/External_Id__c/X-1", map[string]any{"Name": "Second"})
	require.Equal(t, http.StatusOK, r.status)
	second := r.object(t)
	require.Equal(t, false, second["created"])
	require.Equal(t, first["id"], second["id"])
	require.Equal(t, "Second", b.do("GET", "sobjects/Account/External_Id__c/X-1", nil).object(t)["Name"])

	// Legacy_Key__c is an external id without uniqueness, so two records may share a value.
	b.create("Account", map[string]any{"Name": "L1", "Legacy_Key__c": "K"})
	b.create("Account", map[string]any{"Name": "L2", "Legacy_Key__c": "K"})
	r = b.do("PATCH", "sobjects/Account/Legacy_Key__c/K", map[string]any{"Name": "Which?"})
	require.Equal(t, http.StatusMultipleChoices, r.status)
	require.Len(t, r.json(t).([]any), 2)

	r = b.do("PATCH", "sobjects/Account/Name/Acme", map[string]any{})
	require.Equal(t, http.StatusNotFound, r.status, "only external id fields can key an upsert")

	r = b.do("PATCH", "sobjects/Account/External_Id__c/NEW?updateOnly=true", map[string]any{"Name": "x"})
	require.Equal(t, http.StatusNotFound, r.status)
}

func TestCollectionsReportPerRecordErrorsOrRollBackWithAllOrNone(t *testing.T) {
	b := setup(t)
	body := func(allOrNone bool) map[string]any {
		return map[string]any{"allOrNone": allOrNone, "records": []any{
			map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "Good"},
			map[string]any{"attributes": map[string]any{"type": "Account"}, "Industry": "Banking"},
			map[string]any{"attributes": map[string]any{"type": "Contact"}, "LastName": "Also good"},
		}}
	}
	r := b.do("POST", "composite/sobjects", body(false))
	require.Equal(t, http.StatusOK, r.status)
	items := r.json(t).([]any)
	require.Equal(t, true, items[0].(map[string]any)["success"])
	require.Equal(t, "003", items[2].(map[string]any)["id"].(string)[:3])
	failed := items[1].(map[string]any)
	require.Equal(t, false, failed["success"])
	require.NotContains(t, failed, "id")
	require.Equal(t, []any{map[string]any{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": []any{"Name"}}}, failed["errors"])
	count := b.do("GET", "query?q="+url.QueryEscape("SELECT COUNT() FROM Account"), nil).object(t)["totalSize"]
	require.Equal(t, json.Number("1"), count)

	r = b.do("POST", "composite/sobjects", body(true))
	items = r.json(t).([]any)
	rolled := items[0].(map[string]any)
	require.Equal(t, false, rolled["success"])
	require.Equal(t, "ALL_OR_NONE_OPERATION_ROLLED_BACK", rolled["errors"].([]any)[0].(map[string]any)["statusCode"])
	require.Equal(t, "REQUIRED_FIELD_MISSING", items[1].(map[string]any)["errors"].([]any)[0].(map[string]any)["statusCode"])
	count = b.do("GET", "query?q="+url.QueryEscape("SELECT COUNT() FROM Account"), nil).object(t)["totalSize"]
	require.Equal(t, json.Number("1"), count, "nothing of the all-or-none call was kept")

	// Update, retrieve, upsert and delete.
	id := items[0].(map[string]any)["id"]
	require.Nil(t, id)
	good := b.create("Account", map[string]any{"Name": "G"})
	r = b.do("PATCH", "composite/sobjects", map[string]any{"allOrNone": false, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Account"}, "Id": good, "Name": "G2"},
		map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "no id"},
	}})
	items = r.json(t).([]any)
	require.Equal(t, true, items[0].(map[string]any)["success"])
	require.Equal(t, "MISSING_ARGUMENT", items[1].(map[string]any)["errors"].([]any)[0].(map[string]any)["statusCode"])
	r = b.do("GET", "composite/sobjects/Account?ids="+good+",001R00000000099AAA&fields=Id,Name", nil)
	got := r.json(t).([]any)
	require.Equal(t, "G2", got[0].(map[string]any)["Name"])
	require.Nil(t, got[1])

	r = b.do("PATCH", "composite/sobjects/Account/External_Id__c", map[string]any{"allOrNone": false, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Account"}, "External_Id__c": "U-1", "Name": "U"},
	}})
	require.Equal(t, true, r.json(t).([]any)[0].(map[string]any)["created"])

	r = b.do("DELETE", "composite/sobjects?ids="+good+",001R00000000099AAA&allOrNone=false", nil)
	items = r.json(t).([]any)
	require.Equal(t, true, items[0].(map[string]any)["success"])
	require.Equal(t, false, items[1].(map[string]any)["success"])

	records := make([]any, 201)
	for i := range records {
		records[i] = map[string]any{"attributes": map[string]any{"type": "Account"}, "Name": "x"}
	}
	r = b.do("POST", "composite/sobjects", map[string]any{"records": records})
	require.Equal(t, http.StatusBadRequest, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "EXCEEDED_ID_LIMIT", code)
}

func TestCompositeResolvesReferencesAndRollsBackWithAllOrNone(t *testing.T) {
	b := setup(t)
	req := func(allOrNone bool, contactBody map[string]any) map[string]any {
		return map[string]any{"allOrNone": allOrNone, "compositeRequest": []any{
			map[string]any{"method": "POST", "url": "/services/data/v62.0/sobjects/Account", "referenceId": "refAcct", "body": map[string]any{"Name": "Composite"}},
			map[string]any{"method": "POST", "url": "/services/data/v62.0/sobjects/Contact", "referenceId": "refCt", "body": contactBody},
			map[string]any{"method": "GET", "url": "/services/data/v62.0/sobjects/Account/@{refAcct.id}?fields=Name", "referenceId": "refRead"},
		}}
	}
	r := b.do("POST", "composite", req(true, map[string]any{"LastName": "B", "AccountId": "@{refAcct.id}"}))
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	resps := r.object(t)["compositeResponse"].([]any)
	acct := resps[0].(map[string]any)
	require.Equal(t, json.Number("201"), acct["httpStatusCode"])
	acctID := acct["body"].(map[string]any)["id"].(string)
	require.Equal(t, "/services/data/v62.0/sobjects/Account/"+acctID, acct["httpHeaders"].(map[string]any)["Location"])
	ct := resps[1].(map[string]any)["body"].(map[string]any)["id"].(string)
	require.Equal(t, acctID, b.do("GET", "sobjects/Contact/"+ct, nil).object(t)["AccountId"])
	require.Equal(t, "Composite", resps[2].(map[string]any)["body"].(map[string]any)["Name"])

	r = b.do("POST", "composite", req(true, map[string]any{"FirstName": "no last name", "AccountId": "@{refAcct.id}"}))
	resps = r.object(t)["compositeResponse"].([]any)
	require.Equal(t, json.Number("400"), resps[0].(map[string]any)["httpStatusCode"])
	require.Equal(t, "PROCESSING_HALTED", resps[0].(map[string]any)["body"].([]any)[0].(map[string]any)["errorCode"])
	require.Equal(t, "REQUIRED_FIELD_MISSING", resps[1].(map[string]any)["body"].([]any)[0].(map[string]any)["errorCode"])
	require.Equal(t, "PROCESSING_HALTED", resps[2].(map[string]any)["body"].([]any)[0].(map[string]any)["errorCode"])
	count := b.do("GET", "query?q="+url.QueryEscape("SELECT COUNT() FROM Account"), nil).object(t)["totalSize"]
	require.Equal(t, json.Number("1"), count, "the failed composite left no account behind")
}

func TestTreeCreatesNestedRecordsAllOrNothing(t *testing.T) {
	b := setup(t)
	body := func(lastName any) map[string]any {
		return map[string]any{"records": []any{map[string]any{
			"attributes": map[string]any{"type": "Account", "referenceId": "ref1"}, "Name": "Tree",
			"Contacts": map[string]any{"records": []any{
				map[string]any{"attributes": map[string]any{"type": "Contact", "referenceId": "ref2"}, "LastName": lastName},
			}},
		}}}
	}
	r := b.do("POST", "composite/tree/Account", body("Leaf"))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	res := r.object(t)
	require.Equal(t, false, res["hasErrors"])
	results := res["results"].([]any)
	require.Len(t, results, 2)
	acct := results[0].(map[string]any)["id"].(string)
	ct := results[1].(map[string]any)["id"].(string)
	require.Equal(t, acct, b.do("GET", "sobjects/Contact/"+ct, nil).object(t)["AccountId"])

	r = b.do("POST", "composite/tree/Account", body(nil))
	require.Equal(t, http.StatusBadRequest, r.status)
	res = r.object(t)
	require.Equal(t, true, res["hasErrors"])
	failure := res["results"].([]any)[0].(map[string]any)
	require.Equal(t, "ref2", failure["referenceId"])
	count := b.do("GET", "query?q="+url.QueryEscape("SELECT COUNT() FROM Account"), nil).object(t)["totalSize"]
	require.Equal(t, json.Number("1"), count)
}

func TestUpdatedAndDeletedListChangesInTheWindow(t *testing.T) {
	b := setup(t)
	a := b.create("Account", map[string]any{"Name": "A"})
	c := b.create("Account", map[string]any{"Name": "C"})
	b.clock.Advance(2 * time.Minute)
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+c, nil).status)
	start := "2025-03-01T11:00:00Z"
	end := url.QueryEscape("2025-03-01T13:00:00+00:00")
	r := b.do("GET", "sobjects/Account/updated/?start="+start+"&end="+end, nil)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	up := r.object(t)
	require.Equal(t, []any{a}, up["ids"])
	require.Equal(t, "2025-03-01T13:00:00.000+0000", up["latestDateCovered"])
	r = b.do("GET", "sobjects/Account/deleted/?start="+start+"&end="+end, nil)
	del := r.object(t)["deletedRecords"].([]any)
	require.Equal(t, []any{map[string]any{"id": c, "deletedDate": "2025-03-01T12:02:00.000+0000"}}, del)
	r = b.do("GET", "sobjects/Account/updated/?end="+end, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
}

func TestQueryPagesThroughLocatorsAndNestsParents(t *testing.T) {
	b := setup(t)
	acct := b.create("Account", map[string]any{"Name": "Parent Co"})
	_, err := b.srv.Seed(t.Context(), "Contact", 450, func(i int) map[string]any {
		f := map[string]any{"LastName": fmt.Sprintf("C%03d", i)}
		if i%2 == 0 {
			f["AccountId"] = acct
		}
		return f
	})
	require.NoError(t, err)
	q := url.QueryEscape("SELECT Id, LastName, Account.Name, Owner.Username FROM Contact ORDER BY LastName")
	r := b.do("GET", "query?q="+q, nil, "Sforce-Query-Options", "batchSize=200")
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	page := r.object(t)
	require.Equal(t, json.Number("450"), page["totalSize"])
	require.Equal(t, false, page["done"])
	recs := page["records"].([]any)
	require.Len(t, recs, 200)
	first := recs[0].(map[string]any)
	require.Equal(t, "C000", first["LastName"])
	require.Equal(t, "Parent Co", first["Account"].(map[string]any)["Name"])
	require.Equal(t, map[string]any{"type": "Account", "url": "/services/data/v62.0/sobjects/Account/" + acct}, first["Account"].(map[string]any)["attributes"])
	require.Equal(t, DefaultUsername, first["Owner"].(map[string]any)["Username"])
	require.Nil(t, recs[1].(map[string]any)["Account"], "an empty lookup is null")
	seen := len(recs)
	next := page["nextRecordsUrl"].(string)
	require.Regexp(t, `^/services/data/v62.0/query/01g[0-9A-Za-z]{15}-200$`, next)
	for next != "" {
		r = b.do("GET", next, nil, "Sforce-Query-Options", "batchSize=200")
		require.Equal(t, http.StatusOK, r.status)
		page = r.object(t)
		seen += len(page["records"].([]any))
		next, _ = page["nextRecordsUrl"].(string)
		if next == "" {
			require.Equal(t, true, page["done"])
			require.NotContains(t, page, "nextRecordsUrl")
		}
	}
	require.Equal(t, 450, seen)

	r = b.do("GET", "query/01gR00000000000AAA-200", nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	code, _ := r.firstError(t)
	require.Equal(t, "INVALID_QUERY_LOCATOR", code)

	r = b.do("GET", "query?q="+url.QueryEscape("SELECT Id, Bogus FROM Contact"), nil)
	code, msg := r.firstError(t)
	require.Equal(t, "INVALID_FIELD", code)
	require.Contains(t, msg, "No such column 'Bogus' on entity 'Contact'")
	r = b.do("GET", "query?q="+url.QueryEscape("SELEC Id FROM Contact"), nil)
	code, _ = r.firstError(t)
	require.Equal(t, "MALFORMED_QUERY", code)

	r = b.do("GET", "query?q="+url.QueryEscape("SELECT COUNT() FROM Contact WHERE AccountId != null"), nil)
	require.JSONEq(t, `{"totalSize":225,"done":true,"records":[]}`, string(r.body))
}

func TestDeletedRecordsAreVisibleOnlyToQueryAllUntilUndeleted(t *testing.T) {
	b := setup(t)
	id := b.create("Account", map[string]any{"Name": "Binned"})
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+id, nil).status)
	q := url.QueryEscape("SELECT Id, IsDeleted FROM Account")
	require.Equal(t, json.Number("0"), b.do("GET", "query?q="+q, nil).object(t)["totalSize"])
	all := b.do("GET", "queryAll?q="+q, nil).object(t)
	require.Equal(t, json.Number("1"), all["totalSize"])
	require.Equal(t, true, all["records"].([]any)[0].(map[string]any)["IsDeleted"])

	require.NoError(t, b.srv.Undelete(t.Context(), "Account", id))
	require.Equal(t, json.Number("1"), b.do("GET", "query?q="+q, nil).object(t)["totalSize"])
	require.Error(t, b.srv.Undelete(t.Context(), "Account", id), "a live record is not in the recycle bin")

	// Hard delete through Bulk removes the record even from queryAll.
	require.Equal(t, http.StatusNoContent, b.do("DELETE", "sobjects/Account/"+id, nil).status)
	res := bulkBackend{b.srv}.Ingest(t.Context(), "hardDelete", "Account", "", []bulkRecord{{"Id": {Value: id}}})
	require.Nil(t, res[0].Err)
	require.Equal(t, json.Number("0"), b.do("GET", "queryAll?q="+q, nil).object(t)["totalSize"])
}

func TestEveryDataAnswerCarriesLimitInfoAndTheQuotaEndsWith403(t *testing.T) {
	b := setup(t, func(c *Config) { c.APILimit = 3 })
	r := b.do("GET", "limits", nil)
	require.Equal(t, "api-usage=1/3", r.header.Get("Sforce-Limit-Info"))
	require.Equal(t, "application/json;charset=UTF-8", r.header.Get("Content-Type"))
	lim := r.object(t)["DailyApiRequests"].(map[string]any)
	require.Equal(t, map[string]any{"Max": json.Number("3"), "Remaining": json.Number("2")}, lim)
	// OAuth calls are not API calls.
	b.login()
	require.Equal(t, "api-usage=2/3", b.do("GET", "sobjects", nil).header.Get("Sforce-Limit-Info"))
	require.Equal(t, "api-usage=3/3", b.do("GET", "sobjects", nil).header.Get("Sforce-Limit-Info"))
	r = b.do("GET", "sobjects", nil)
	require.Equal(t, http.StatusForbidden, r.status)
	require.JSONEq(t, `[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]`, string(r.body))
	require.Equal(t, int64(3), b.srv.APIUsage())
}

func TestIDsAreCaseSafe18CharactersAndAccept15(t *testing.T) {
	require.Equal(t, "001R00000000001IAA", to18("001R00000000001"))
	n, ok := normalizeID("001R00000000001")
	require.True(t, ok)
	require.Equal(t, "001R00000000001IAA", n)
	n, ok = normalizeID("001r00000000001iaa")
	require.True(t, ok, "an 18-character id is case-insensitive")
	require.Equal(t, "001R00000000001IAA", n)
	_, ok = normalizeID("001R00000000001")
	require.True(t, ok)
	for _, bad := range []string{"", "001", "001R0000000000!", "001R00000000001AA9", "001R00000000001IAAX"} {
		_, ok := normalizeID(bad)
		require.False(t, ok, bad)
	}
}

func TestSchemaRejectsMistakesWithTheirFix(t *testing.T) {
	_, err := ParseSchema([]byte(`{"objects":[{"name":"Foo__c","feilds":[]}]}`))
	require.ErrorContains(t, err, "unknown field")
	for _, tc := range []struct{ doc, want string }{
		{`{"objects":[{"name":"Foo","fields":[]}]}`, "custom object names end in __c"},
		{`{"objects":[{"name":"Foo__c","fields":[{"name":"Bar","type":"string"}]}]}`, "custom field names end in __c"},
		{`{"objects":[{"name":"Foo__c","fields":[{"name":"Bar__c","type":"blob"}]}]}`, `type "blob" is not one of`},
		{`{"objects":[{"name":"Foo__c","fields":[{"name":"Bar__c","type":"reference","referenceTo":"Nope"}]}]}`, `referenceTo "Nope" is not a known object`},
		{`{"objects":[{"name":"Foo__c","fields":[],"validationRules":[{"name":"r","field":"Baz__c","op":"<","message":"m"}]}]}`, `names unknown field "Baz__c"`},
	} {
		s, err := ParseSchema([]byte(tc.doc))
		require.NoError(t, err)
		_, err = buildCatalog(s)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestLookupsCanBeSetThroughTheParentsExternalID(t *testing.T) {
	b := setup(t)
	acme := b.create("Account", map[string]any{"Name": "Acme", "External_Id__c": "A-1"})
	globex := b.create("Account", map[string]any{"Name": "Globex", "External_Id__c": "A-2"})

	// REST create and update, with a custom lookup (Account__r) and a standard one (Contact.Account).
	inv := b.create("Invoice__c", map[string]any{"Name": "INV-1", "Amount__c": 10, "Account__r": map[string]any{"External_Id__c": "a-1"}})
	r := b.do("GET", "sobjects/Invoice__c/"+inv, nil)
	require.Equal(t, acme, r.object(t)["Account__c"], "external ids match case-insensitively unless declared case-sensitive")
	ct := b.create("Contact", map[string]any{"LastName": "Lee", "Account": map[string]any{"attributes": map[string]any{"type": "Account"}, "External_Id__c": "A-1"}})
	require.Equal(t, http.StatusNoContent, b.do("PATCH", "sobjects/Contact/"+ct, map[string]any{"Account": map[string]any{"External_Id__c": "A-2"}}).status)
	require.Equal(t, globex, b.do("GET", "sobjects/Contact/"+ct, nil).object(t)["AccountId"])

	// An unknown value fails like Salesforce: INVALID_FIELD naming the value, field and entity.
	r = b.do("POST", "sobjects/Contact", map[string]any{"LastName": "Nope", "Account": map[string]any{"External_Id__c": "A-404"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	code, msg := r.firstError(t)
	require.Equal(t, "INVALID_FIELD", code)
	require.Equal(t, "Foreign key external ID: A-404 not found for field External_Id__c in entity Account", msg)

	// Upsert and Collections accept the same nested form; per-record errors use statusCode.
	r = b.do("PATCH", "sobjects/Contact/Id/"+ct, map[string]any{"Account": map[string]any{"External_Id__c": "A-1"}})
	require.Contains(t, []int{http.StatusOK, http.StatusNoContent}, r.status, string(r.body))
	r = b.do("POST", "composite/sobjects", map[string]any{"allOrNone": false, "records": []any{
		map[string]any{"attributes": map[string]any{"type": "Contact"}, "LastName": "Col", "Account": map[string]any{"External_Id__c": "A-2"}},
		map[string]any{"attributes": map[string]any{"type": "Contact"}, "LastName": "Bad", "Account": map[string]any{"External_Id__c": "A-9"}},
	}})
	require.Equal(t, http.StatusOK, r.status)
	items := r.json(t).([]any)
	require.Equal(t, true, items[0].(map[string]any)["success"])
	bad := items[1].(map[string]any)["errors"].([]any)[0].(map[string]any)
	require.Equal(t, "INVALID_FIELD", bad["statusCode"])
	require.Equal(t, "Foreign key external ID: A-9 not found for field External_Id__c in entity Account", bad["message"])
	created := items[0].(map[string]any)["id"].(string)
	require.Equal(t, globex, b.do("GET", "sobjects/Contact/"+created, nil).object(t)["AccountId"])

	// A field that is not an external id cannot be used.
	r = b.do("POST", "sobjects/Contact", map[string]any{"LastName": "X", "Account": map[string]any{"Name": "Acme"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	code, _ = r.firstError(t)
	require.Equal(t, "INVALID_FIELD", code)
}

func TestBulkCSVSetsLookupsThroughRelationshipColumns(t *testing.T) {
	b := setup(t)
	acme := b.create("Account", map[string]any{"Name": "Acme", "External_Id__c": "A-1"})
	id := b.runIngestJob("Contact", "insert", "LastName,Account.External_Id__c\nKnown,A-1\nUnknown,A-404\nNone,\n")
	r := b.do("GET", "jobs/ingest/"+id+"/failedResults", nil)
	require.Contains(t, string(r.body), `"INVALID_FIELD:Foreign key external ID: A-404 not found for field External_Id__c in entity Account:--"`)
	r = b.do("GET", "query?q="+url.QueryEscape("SELECT LastName, AccountId FROM Contact ORDER BY LastName"), nil)
	recs := r.object(t)["records"].([]any)
	require.Len(t, recs, 2)
	require.Equal(t, acme, recs[0].(map[string]any)["AccountId"])
	require.Nil(t, recs[1].(map[string]any)["AccountId"], "an empty cell leaves the lookup as it is")
}
