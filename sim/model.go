package sim

import (
	"sort"
	"strings"
)

// Field is one field of an object as the simulator enforces and describes it.
type Field struct {
	Name  string
	Label string
	Type  string // describe type: id, string, textarea, email, phone, url, picklist, multipicklist, boolean, int, double, currency, percent, date, datetime, time, reference, address

	// Index is the field's slot in a record's value slice, or -1 for compound fields (addresses) that are
	// computed from their components on read.
	Index int

	Length    int // text types: maximum characters
	Precision int // double/currency/percent: total digits; int: digits
	Scale     int

	Custom            bool
	Createable        bool
	Updateable        bool
	Nillable          bool
	DefaultedOnCreate bool
	Required          bool // createable, not nillable and not defaulted: REQUIRED_FIELD_MISSING when absent
	Unique            bool
	CaseSensitive     bool
	ExternalID        bool
	IDLookup          bool
	NameField         bool
	Calculated        bool // derived by the simulator (Contact.Name, Opportunity.IsWon, ...)
	AutoNumber        bool

	Picklist   []string
	Restricted bool
	Default    any // value stored on create when the field is absent

	ReferenceTo      []string
	RelationshipName string
	// CascadeDelete says that deleting the parent deletes the records that name it here (Contact.AccountId,
	// Opportunity.AccountId), as Salesforce does.
	CascadeDelete bool

	// CompoundName is set on the parts of a compound field (BillingCity -> BillingAddress, FirstName -> Name);
	// Component is the part's name inside the compound as change events spell it (City, FirstName).
	CompoundName string
	Component    string

	// compound lists the parts of an address or name compound field, in describe order.
	compound []*Field

	// hidden is set by HideField: the field is not visible to the integration user any more.
	hidden bool
}

// Object is one sObject type: its fields in describe order, lookups by lower-cased name, and its rules.
type Object struct {
	Name        string
	Label       string
	LabelPlural string
	KeyPrefix   string
	Custom      bool
	Deletable   bool
	// NoCDC is set for objects not selected for Change Data Capture (schema "cdc": false).
	NoCDC bool

	Fields []*Field
	// stored counts the fields with an Index, i.e. the length of a record's value slice.
	stored int

	byLower    map[string]*Field
	byName     map[string]*Field // canonical names, for the query evaluator's hot path
	relByLower map[string]*Field
	rules      []Rule
	derive     func(vals []any)

	ids    idGen
	autoNo int64 // last auto number handed out (Case.CaseNumber)

	// children are the lookups that point at this object, for describe's childRelationships.
	children []childRel
}

type childRel struct {
	Object, Field, RelationshipName string
	cascade                         bool
}

// Field returns the field named name, case-insensitively.
func (o *Object) Field(name string) *Field { return o.byLower[strings.ToLower(name)] }

// addField appends f; stored fields get the next value slot.
func (o *Object) addField(f *Field) *Field {
	if old := o.byLower[strings.ToLower(f.Name)]; old != nil {
		return old
	}
	if f.Label == "" {
		f.Label = labelFor(f.Name)
	}
	if f.Type == "address" {
		f.Index = -1
	} else {
		f.Index = o.stored
		o.stored++
	}
	if !f.Nillable && f.Createable && !f.DefaultedOnCreate && f.Type != "boolean" {
		f.Required = true
	}
	o.Fields = append(o.Fields, f)
	o.byLower[strings.ToLower(f.Name)] = f
	o.byName[f.Name] = f
	if f.RelationshipName != "" {
		o.relByLower[strings.ToLower(f.RelationshipName)] = f
	}
	return f
}

// labelFor turns an API name into a readable label: Amount__c -> Amount, Foo_Bar__c -> Foo Bar.
func labelFor(name string) string {
	s := strings.TrimSuffix(name, "__c")
	return strings.ReplaceAll(s, "_", " ")
}

func newObject(name, prefix string, custom bool) *Object {
	o := &Object{
		Name: name, Label: labelFor(name), LabelPlural: labelFor(name) + "s", KeyPrefix: prefix, Custom: custom,
		Deletable: true, byLower: map[string]*Field{}, byName: map[string]*Field{}, relByLower: map[string]*Field{},
	}
	o.ids.prefix = prefix
	return o
}

// Catalog is the set of objects of one simulated org.
type Catalog struct {
	objects []*Object
	byLower map[string]*Object
	prefix  map[string]*Object
}

func (c *Catalog) add(o *Object) {
	c.objects = append(c.objects, o)
	c.byLower[strings.ToLower(o.Name)] = o
	c.prefix[o.KeyPrefix] = o
}

// Object returns the object named name, case-insensitively, or nil.
func (c *Catalog) Object(name string) *Object { return c.byLower[strings.ToLower(name)] }

// Objects returns every object, sorted by name as global describe lists them.
func (c *Catalog) Objects() []*Object {
	out := append([]*Object(nil), c.objects...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ObjectForID returns the object whose key prefix starts id.
func (c *Catalog) ObjectForID(id string) *Object {
	if len(id) < 3 {
		return nil
	}
	return c.prefix[id[:3]]
}

// linkChildren fills every object's childRelationships from the lookups pointing at it.
func (c *Catalog) linkChildren() {
	for _, o := range c.objects {
		o.children = nil
	}
	for _, o := range c.objects {
		for _, f := range o.Fields {
			if f.Type != "reference" || len(f.ReferenceTo) == 0 {
				continue
			}
			for _, target := range f.ReferenceTo {
				p := c.Object(target)
				if p == nil {
					continue
				}
				p.children = append(p.children, childRel{Object: o.Name, Field: f.Name, RelationshipName: childRelName(o, f), cascade: f.CascadeDelete})
			}
		}
	}
}

// childRelName is the plural relationship name a parent uses for its children (Account.Contacts); only the
// canonical standard lookups have one, as in Salesforce, where system lookups like CreatedById have none.
func childRelName(child *Object, f *Field) string {
	switch f.Name {
	case "CreatedById", "LastModifiedById", "OwnerId":
		return ""
	}
	if f.Custom {
		return strings.ReplaceAll(child.LabelPlural, " ", "_") + "__r"
	}
	if child.Name == "Account" && f.Name == "ParentId" {
		return "ChildAccounts" // Account's self-lookup: (SELECT Id FROM ChildAccounts)
	}
	return child.LabelPlural
}
