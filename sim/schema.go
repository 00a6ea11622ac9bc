package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"regexp"
	"strings"
	"time"
)

// Schema declares custom objects, and custom fields on standard objects, in the JSON form documented in
// docs/sim.md. An object whose name is a standard object (Account) extends it; any other name must end in
// __c and creates a custom object.
type Schema struct {
	Objects []ObjectDef `json:"objects"`
}

// ObjectDef declares one object.
type ObjectDef struct {
	Name            string     `json:"name"`
	Label           string     `json:"label,omitempty"`
	LabelPlural     string     `json:"labelPlural,omitempty"`
	Fields          []FieldDef `json:"fields"`
	ValidationRules []Rule     `json:"validationRules,omitempty"`
	// CDC selects the object for Change Data Capture (default true). With false the object has no change
	// event entity in global describe, its channel is refused as unknown and its writes publish no events,
	// as for an object an admin did not select; clients then have to fall back to polling.
	CDC *bool `json:"cdc,omitempty"`
}

// FieldDef declares one custom field.
type FieldDef struct {
	Name             string   `json:"name"`
	Label            string   `json:"label,omitempty"`
	Type             string   `json:"type"`
	Length           int      `json:"length,omitempty"`
	Precision        int      `json:"precision,omitempty"`
	Scale            int      `json:"scale,omitempty"`
	Required         bool     `json:"required,omitempty"`
	Unique           bool     `json:"unique,omitempty"`
	CaseSensitive    bool     `json:"caseSensitive,omitempty"`
	ExternalID       bool     `json:"externalId,omitempty"`
	PicklistValues   []string `json:"picklistValues,omitempty"`
	Restricted       bool     `json:"restricted,omitempty"`
	ReferenceTo      string   `json:"referenceTo,omitempty"`
	RelationshipName string   `json:"relationshipName,omitempty"`
	DefaultValue     any      `json:"defaultValue,omitempty"`
}

// Rule is a validation rule: the record is rejected with FIELD_CUSTOM_VALIDATION_EXCEPTION and Message when
// the condition "Field Op Value" holds, just as a Salesforce rule formula rejects when it evaluates to true.
// Ops: "<", "<=", ">", ">=", "=", "!=" (numbers, dates and text compare by their type), "blank", "notBlank",
// "regex" (rejects when the text matches), "notRegex" (rejects when it does not match, blank text excepted).
type Rule struct {
	Name    string `json:"name"`
	Field   string `json:"field"`
	Op      string `json:"op"`
	Value   string `json:"value,omitempty"`
	Message string `json:"message"`

	re   *regexp.Regexp
	num  *big.Rat
	when time.Time
}

// LoadSchema reads a schema file.
func LoadSchema(path string) (*Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	return ParseSchema(b)
}

// ParseSchema decodes a schema document, refusing unknown keys so that a typo does not silently drop a rule.
func ParseSchema(b []byte) (*Schema, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Schema
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &s, nil
}

var fieldTypes = map[string]bool{
	"string": true, "textarea": true, "email": true, "phone": true, "url": true, "picklist": true,
	"multipicklist": true, "boolean": true, "int": true, "double": true, "currency": true, "percent": true,
	"date": true, "datetime": true, "time": true, "reference": true,
}

// buildCatalog makes the org's catalog: the standard objects, then the schema's objects and fields.
func buildCatalog(s *Schema) (*Catalog, error) {
	c := &Catalog{byLower: map[string]*Object{}, prefix: map[string]*Object{}}
	standardObjects(c)
	if s == nil {
		c.linkChildren()
		return c, nil
	}
	// Objects first, so that lookups may point at custom objects declared later in the file.
	var custom []*Object
	for _, od := range s.Objects {
		if c.Object(od.Name) != nil {
			continue
		}
		if !strings.HasSuffix(od.Name, "__c") || !validAPIName(strings.TrimSuffix(od.Name, "__c")) {
			return nil, fmt.Errorf("schema: object %q: custom object names end in __c (e.g. Invoice__c)", od.Name)
		}
		o := newObject(od.Name, customPrefix(len(custom)), true)
		if od.Label != "" {
			o.Label = od.Label
		}
		o.LabelPlural = o.Label + "s"
		if od.LabelPlural != "" {
			o.LabelPlural = od.LabelPlural
		}
		addSystemHead(o, true)
		o.addField(nameField(80))
		custom = append(custom, o)
		c.add(o)
	}
	for _, od := range s.Objects {
		o := c.Object(od.Name)
		if od.CDC != nil {
			o.NoCDC = !*od.CDC
		}
		for _, fd := range od.Fields {
			if o.Custom && strings.EqualFold(fd.Name, "Name") {
				// A custom object may relabel or resize its Name field.
				n := o.Field("Name")
				if fd.Length > 0 {
					n.Length = fd.Length
				}
				if fd.Label != "" {
					n.Label = fd.Label
				}
				continue
			}
			f, err := customField(c, o, fd)
			if err != nil {
				return nil, fmt.Errorf("schema: %s.%s: %w", od.Name, fd.Name, err)
			}
			if o.Field(f.Name) != nil {
				return nil, fmt.Errorf("schema: %s.%s: field declared twice", od.Name, fd.Name)
			}
			o.addField(f)
		}
		for _, r := range od.ValidationRules {
			f := o.Field(r.Field)
			if f == nil {
				return nil, fmt.Errorf("schema: %s: validation rule %q names unknown field %q", od.Name, r.Name, r.Field)
			}
			switch r.Op {
			case "<", "<=", ">", ">=", "=", "!=", "blank", "notBlank", "regex", "notRegex":
			default:
				return nil, fmt.Errorf("schema: %s: validation rule %q: op %q is not one of < <= > >= = != blank notBlank regex notRegex", od.Name, r.Name, r.Op)
			}
			if r.Message == "" {
				return nil, fmt.Errorf("schema: %s: validation rule %q needs a message", od.Name, r.Name)
			}
			rule := r
			rule.Field = f.Name
			if err := rule.compile(f); err != nil {
				return nil, fmt.Errorf("schema: %s: validation rule %q: %w", od.Name, r.Name, err)
			}
			o.rules = append(o.rules, rule)
		}
	}
	for _, o := range custom {
		addSystemTail(o, true)
	}
	c.linkChildren()
	return c, nil
}

// customPrefix gives custom objects the key prefixes a00, a01, ... in declaration order.
func customPrefix(i int) string {
	return "a" + string(base62[(i/62)%62]) + string(base62[i%62])
}

func validAPIName(s string) bool {
	if s == "" || !(s[0] >= 'A' && s[0] <= 'Z' || s[0] >= 'a' && s[0] <= 'z') || strings.Contains(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '_' {
			return false
		}
	}
	return true
}

func customField(c *Catalog, o *Object, fd FieldDef) (*Field, error) {
	if !strings.HasSuffix(fd.Name, "__c") || !validAPIName(strings.TrimSuffix(fd.Name, "__c")) {
		return nil, fmt.Errorf("custom field names end in __c (e.g. External_Id__c)")
	}
	if !fieldTypes[fd.Type] {
		return nil, fmt.Errorf("type %q is not one of string, textarea, email, phone, url, picklist, multipicklist, boolean, int, double, currency, percent, date, datetime, time, reference", fd.Type)
	}
	f := typed(fd.Name, fd.Type)
	f.Custom = true
	if fd.Label != "" {
		f.Label = fd.Label
	}
	switch fd.Type {
	case "string":
		f.Length = 255
	case "picklist", "multipicklist":
		f.Length = 255
		if len(fd.PicklistValues) == 0 {
			return nil, fmt.Errorf("a %s needs picklistValues", fd.Type)
		}
		f.Picklist, f.Restricted = fd.PicklistValues, fd.Restricted
	case "reference":
		target := c.Object(fd.ReferenceTo)
		if target == nil {
			return nil, fmt.Errorf("referenceTo %q is not a known object", fd.ReferenceTo)
		}
		f.Length = 18
		f.ReferenceTo = []string{target.Name}
		f.RelationshipName = fd.RelationshipName
		if f.RelationshipName == "" {
			f.RelationshipName = strings.TrimSuffix(fd.Name, "__c") + "__r"
		}
	case "double", "currency", "percent":
		if fd.Precision == 0 && fd.Scale > 0 {
			f.Precision = 18
		}
	}
	if fd.Length > 0 {
		f.Length = fd.Length
	}
	if fd.Precision > 0 {
		f.Precision = fd.Precision
	}
	if fd.Scale > 0 {
		f.Scale = fd.Scale
	}
	if fd.Required && fd.Type != "boolean" {
		f.Nillable = false
	}
	f.Unique, f.CaseSensitive = fd.Unique, fd.CaseSensitive
	f.ExternalID = fd.ExternalID
	f.IDLookup = fd.ExternalID || fd.Unique
	if fd.DefaultValue != nil {
		v, err := convertJSON(f, fd.DefaultValue)
		if err != nil {
			return nil, fmt.Errorf("defaultValue: %v", err)
		}
		f.Default = v
		f.DefaultedOnCreate = true
	}
	return f, nil
}
