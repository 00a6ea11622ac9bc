package sim

import "strings"

// The standard objects a sync tool meets first, with the fields most orgs use. Field names, types, lengths
// and picklist values follow a fresh Developer Edition org.

func text(name string, length int) *Field {
	return &Field{Name: name, Type: "string", Length: length, Createable: true, Updateable: true, Nillable: true}
}

func typed(name, typ string) *Field {
	f := &Field{Name: name, Type: typ, Createable: true, Updateable: true, Nillable: true}
	switch typ {
	case "textarea":
		f.Length = 32000
	case "email", "url":
		f.Length = 255
	case "phone":
		f.Length = 40
	case "currency":
		f.Precision, f.Scale = 18, 2
	case "double":
		f.Precision, f.Scale = 18, 0
	case "percent":
		f.Precision, f.Scale = 3, 0
	case "int":
		f.Precision = 9
	case "boolean":
		f.Nillable = false
		f.DefaultedOnCreate = true
		f.Default = false
	}
	return f
}

func sized(f *Field, length int) *Field { f.Length = length; return f }

func required(f *Field) *Field { f.Nillable = false; return f }

func readOnly(f *Field) *Field {
	f.Createable, f.Updateable = false, false
	return f
}

func pick(name string, restricted bool, values ...string) *Field {
	return &Field{Name: name, Type: "picklist", Length: 255, Createable: true, Updateable: true, Nillable: true,
		Picklist: values, Restricted: restricted}
}

func withDefault(f *Field, v any) *Field {
	f.Default = v
	f.DefaultedOnCreate = true
	return f
}

func ref(name, target, rel string) *Field {
	return &Field{Name: name, Label: strings.TrimSuffix(name, "Id") + " ID", Type: "reference", Length: 18, Createable: true,
		Updateable: true, Nillable: true, ReferenceTo: []string{target}, RelationshipName: rel}
}

// cascade marks a lookup whose records Salesforce deletes with their parent.
func cascade(f *Field) *Field {
	f.CascadeDelete = true
	return f
}

// addSystemHead adds the fields every object starts with.
func addSystemHead(o *Object, deletable bool) {
	o.addField(&Field{Name: "Id", Label: o.Label + " ID", Type: "id", Length: 18, DefaultedOnCreate: true, IDLookup: true})
	if deletable {
		o.addField(&Field{Name: "IsDeleted", Label: "Deleted", Type: "boolean", DefaultedOnCreate: true, Default: false})
	}
}

// addSystemTail adds owner and audit fields, which Salesforce lists after the object's own fields.
func addSystemTail(o *Object, owned bool) {
	if owned {
		o.addField(&Field{Name: "OwnerId", Label: "Owner ID", Type: "reference", Length: 18, Createable: true,
			Updateable: true, DefaultedOnCreate: true, ReferenceTo: []string{"User"}, RelationshipName: "Owner"})
	}
	for _, f := range []*Field{
		{Name: "CreatedDate", Label: "Created Date", Type: "datetime", DefaultedOnCreate: true},
		{Name: "CreatedById", Label: "Created By ID", Type: "reference", Length: 18, DefaultedOnCreate: true, ReferenceTo: []string{"User"}, RelationshipName: "CreatedBy"},
		{Name: "LastModifiedDate", Label: "Last Modified Date", Type: "datetime", DefaultedOnCreate: true},
		{Name: "LastModifiedById", Label: "Last Modified By ID", Type: "reference", Length: 18, DefaultedOnCreate: true, ReferenceTo: []string{"User"}, RelationshipName: "LastModifiedBy"},
		{Name: "SystemModstamp", Label: "System Modstamp", Type: "datetime", DefaultedOnCreate: true},
	} {
		o.addField(f)
	}
}

// addAddress adds the components of an address and the read-only compound (BillingAddress).
func addAddress(o *Object, prefix string) {
	compound := prefix + "Address"
	parts := []*Field{
		sized(typed(prefix+"Street", "textarea"), 255),
		text(prefix+"City", 40),
		text(prefix+"State", 80),
		text(prefix+"PostalCode", 20),
		text(prefix+"Country", 80),
		typed(prefix+"Latitude", "double"),
		typed(prefix+"Longitude", "double"),
		pick(prefix+"GeocodeAccuracy", true, "Address", "NearAddress", "Block", "Street", "ExtendedZip", "Zip", "Neighborhood", "City", "County", "State", "Unknown"),
	}
	parts[5].Precision, parts[5].Scale = 18, 15
	parts[6].Precision, parts[6].Scale = 18, 15
	c := &Field{Name: compound, Type: "address", Nillable: true}
	for _, p := range parts {
		p.CompoundName = compound
		p.Component = strings.TrimPrefix(p.Name, prefix)
		o.addField(p)
		c.compound = append(c.compound, p)
	}
	o.addField(c)
}

// addPersonName adds Salutation, FirstName, LastName and the derived Name of people-like objects.
func addPersonName(o *Object, salutation bool) {
	var parts []*Field
	if salutation {
		parts = append(parts, pick("Salutation", false, "Mr.", "Ms.", "Mrs.", "Dr.", "Prof."))
	}
	parts = append(parts, text("FirstName", 40), required(text("LastName", 80)))
	name := readOnly(text("Name", 121))
	name.Calculated, name.NameField, name.IDLookup = true, true, true
	for _, p := range parts {
		p.CompoundName, p.Component = "Name", p.Name
		o.addField(p)
		name.compound = append(name.compound, p)
	}
	o.addField(name)
	first, last := o.Field("FirstName").Index, o.Field("LastName").Index
	o.derive = func(vals []any) {
		f, _ := vals[first].(string)
		l, _ := vals[last].(string)
		n := strings.TrimSpace(f + " " + l)
		if n == "" {
			vals[name.Index] = nil
		} else {
			vals[name.Index] = n
		}
	}
}

func nameField(length int) *Field {
	f := required(text("Name", length))
	f.NameField, f.IDLookup = true, true
	return f
}

var industries = []string{"Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
	"Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering", "Entertainment",
	"Environmental", "Finance", "Food & Beverage", "Government", "Healthcare", "Hospitality", "Insurance",
	"Machinery", "Manufacturing", "Media", "Not For Profit", "Recreation", "Retail", "Shipping", "Technology",
	"Telecommunications", "Transportation", "Utilities", "Other"}

var leadSources = []string{"Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"}

// standardObjects builds the standard part of the catalog.
func standardObjects(c *Catalog) {
	acc := newObject("Account", "001", false)
	addSystemHead(acc, true)
	acc.addField(nameField(255))
	acc.addField(pick("Type", false, "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller", "Installation Partner", "Technology Partner", "Other"))
	acc.addField(ref("ParentId", "Account", "Parent"))
	addAddress(acc, "Billing")
	addAddress(acc, "Shipping")
	acc.addField(typed("Phone", "phone"))
	acc.addField(typed("Fax", "phone"))
	acc.addField(text("AccountNumber", 40))
	acc.addField(typed("Website", "url"))
	acc.addField(text("Site", 80))
	acc.addField(pick("Industry", false, industries...))
	acc.addField(typed("AnnualRevenue", "currency"))
	acc.addField(typed("NumberOfEmployees", "int"))
	acc.addField(pick("Ownership", false, "Public", "Private", "Subsidiary", "Other"))
	acc.addField(pick("Rating", false, "Hot", "Warm", "Cold"))
	acc.addField(typed("Description", "textarea"))
	acc.addField(pick("AccountSource", false, leadSources...))
	addSystemTail(acc, true)

	con := newObject("Contact", "003", false)
	addSystemHead(con, true)
	con.addField(cascade(ref("AccountId", "Account", "Account")))
	addPersonName(con, true)
	addAddress(con, "Mailing")
	con.addField(typed("Phone", "phone"))
	con.addField(typed("MobilePhone", "phone"))
	con.addField(typed("Email", "email"))
	con.addField(text("Title", 128))
	con.addField(text("Department", 80))
	con.addField(typed("Birthdate", "date"))
	con.addField(pick("LeadSource", false, leadSources...))
	con.addField(ref("ReportsToId", "Contact", "ReportsTo"))
	con.addField(typed("HasOptedOutOfEmail", "boolean"))
	con.addField(typed("DoNotCall", "boolean"))
	con.addField(typed("Description", "textarea"))
	addSystemTail(con, true)

	opp := newObject("Opportunity", "006", false)
	opp.LabelPlural = "Opportunities"
	addSystemHead(opp, true)
	opp.addField(cascade(ref("AccountId", "Account", "Account")))
	opp.addField(nameField(120))
	opp.addField(typed("Description", "textarea"))
	opp.addField(required(pick("StageName", true, "Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
		"Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost")))
	opp.Field("StageName").Label = "Stage"
	opp.addField(typed("Amount", "currency"))
	opp.addField(typed("Probability", "percent"))
	opp.addField(required(typed("CloseDate", "date")))
	opp.addField(pick("Type", false, "Existing Customer - Upgrade", "Existing Customer - Replacement", "Existing Customer - Downgrade", "New Customer"))
	opp.addField(text("NextStep", 255))
	opp.addField(pick("LeadSource", false, leadSources...))
	opp.addField(readOnly(typed("IsClosed", "boolean")))
	opp.addField(readOnly(typed("IsWon", "boolean")))
	opp.addField(pick("ForecastCategoryName", false, "Omitted", "Pipeline", "Best Case", "Commit", "Closed"))
	addSystemTail(opp, true)
	stage, closed, won := opp.Field("StageName").Index, opp.Field("IsClosed").Index, opp.Field("IsWon").Index
	opp.derive = func(vals []any) {
		s, _ := vals[stage].(string)
		vals[closed] = s == "Closed Won" || s == "Closed Lost"
		vals[won] = s == "Closed Won"
	}

	lead := newObject("Lead", "00Q", false)
	addSystemHead(lead, true)
	addPersonName(lead, true)
	lead.addField(text("Title", 128))
	lead.addField(required(text("Company", 255)))
	addAddress(lead, "")
	lead.addField(typed("Phone", "phone"))
	lead.addField(typed("MobilePhone", "phone"))
	lead.addField(typed("Email", "email"))
	lead.addField(typed("Website", "url"))
	lead.addField(typed("Description", "textarea"))
	lead.addField(pick("LeadSource", false, leadSources...))
	lead.addField(withDefault(required(pick("Status", true, "Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")), "Open - Not Contacted"))
	lead.addField(pick("Industry", false, industries...))
	lead.addField(pick("Rating", false, "Hot", "Warm", "Cold"))
	lead.addField(typed("AnnualRevenue", "currency"))
	lead.addField(typed("NumberOfEmployees", "int"))
	lead.addField(readOnly(typed("IsConverted", "boolean")))
	addSystemTail(lead, true)

	cs := newObject("Case", "500", false)
	addSystemHead(cs, true)
	num := readOnly(text("CaseNumber", 30))
	num.AutoNumber, num.DefaultedOnCreate, num.Nillable, num.NameField, num.IDLookup = true, true, false, true, true
	cs.addField(num)
	cs.addField(ref("ContactId", "Contact", "Contact"))
	cs.addField(ref("AccountId", "Account", "Account"))
	cs.addField(text("SuppliedName", 80))
	cs.addField(typed("SuppliedEmail", "email"))
	cs.addField(pick("Type", false, "Mechanical", "Electrical", "Electronic", "Structural", "Other"))
	cs.addField(withDefault(pick("Status", true, "New", "Working", "Escalated", "Closed"), "New"))
	cs.addField(pick("Reason", false, "Installation", "Equipment Complexity", "Performance", "Breakdown", "Equipment Design", "Feedback", "Other"))
	cs.addField(pick("Origin", false, "Phone", "Email", "Web"))
	cs.addField(text("Subject", 255))
	cs.addField(withDefault(pick("Priority", false, "High", "Medium", "Low"), "Medium"))
	cs.addField(typed("Description", "textarea"))
	cs.addField(readOnly(typed("IsClosed", "boolean")))
	cs.addField(typed("IsEscalated", "boolean"))
	addSystemTail(cs, true)
	status, caseClosed := cs.Field("Status").Index, cs.Field("IsClosed").Index
	cs.derive = func(vals []any) { vals[caseClosed] = vals[status] == "Closed" }

	user := newObject("User", "005", false)
	user.Deletable = false
	addSystemHead(user, false)
	un := required(text("Username", 80))
	un.Unique, un.IDLookup = true, true
	user.addField(un)
	addPersonName(user, false)
	user.addField(required(text("Alias", 8)))
	user.addField(required(typed("Email", "email")))
	user.addField(withDefault(typed("IsActive", "boolean"), true))
	user.addField(text("Title", 80))
	user.addField(text("Department", 80))
	user.addField(text("CompanyName", 80))
	user.addField(typed("Phone", "phone"))
	addSystemTail(user, false)

	for _, o := range []*Object{acc, con, opp, lead, cs, user} {
		c.add(o)
	}
}
