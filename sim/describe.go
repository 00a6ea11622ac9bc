package sim

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/pgforce/pgforce/sim/cometd"
)

func (s *Server) globalEntry(o *Object, version string) map[string]any {
	base := "/services/data/v" + version + "/sobjects/" + o.Name
	return map[string]any{
		"name": o.Name, "label": o.Label, "labelPlural": o.LabelPlural, "keyPrefix": o.KeyPrefix, "custom": o.Custom,
		"createable": true, "updateable": true, "deletable": o.Deletable, "queryable": true,
		"retrieveable": true, "replicateable": true, "searchable": true, "triggerable": true, "undeletable": o.Deletable,
		"layoutable": true, "mergeable": o.Name == "Account" || o.Name == "Contact" || o.Name == "Lead" || o.Name == "Case",
		"activateable": false, "customSetting": false, "deprecatedAndHidden": false, "feedEnabled": true,
		"hasSubtypes": false, "isSubtype": false, "isInterface": false, "mruEnabled": true, "deepCloneable": false,
		"idEnabled": true, "associateEntityType": nil, "associateParentEntity": nil, "dataTranslationEnabled": false,
		"defaultImplementation": nil, "extendedBy": nil, "extendsInterfaces": nil, "implementedBy": nil,
		"implementsInterfaces": nil,
		"urls":                 map[string]string{"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"},
	}
}

// changeEventEntry is the global describe entry of an object's change event entity (AccountChangeEvent,
// Foo__ChangeEvent). As in a real org it is listed whether or not the object is selected for Change Data
// Capture: the selection is the Tooling API's PlatformEventChannelMember (tooling.go). Change events share
// the key prefix 1CE and can only be subscribed to.
func changeEventEntry(o *Object, version string) map[string]any {
	name := cometd.ChangeEventName(o.Name)
	base := "/services/data/v" + version + "/sobjects/" + name
	return map[string]any{
		"name": name, "label": o.Label + " Change Event", "labelPlural": o.Label + " Change Events", "keyPrefix": "1CE",
		"custom": o.Custom, "createable": false, "updateable": false, "deletable": false, "queryable": false,
		"retrieveable": false, "replicateable": false, "searchable": false, "triggerable": true, "undeletable": false,
		"layoutable": false, "mergeable": false, "activateable": false, "customSetting": false,
		"deprecatedAndHidden": false, "feedEnabled": false, "hasSubtypes": false, "isSubtype": false,
		"isInterface": false, "mruEnabled": false, "deepCloneable": false, "idEnabled": true,
		"associateEntityType": "ChangeEvent", "associateParentEntity": o.Name, "dataTranslationEnabled": false,
		"defaultImplementation": nil, "extendedBy": nil, "extendsInterfaces": nil, "implementedBy": nil,
		"implementsInterfaces": nil,
		"urls": map[string]string{"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}",
			"eventSchema": base + "/eventSchema"},
	}
}

// describeGlobal is GET /sobjects: every object and its change event entity, sorted by name.
func (c *call) describeGlobal() {
	var list []map[string]any
	for _, o := range c.s.cat.Objects() {
		list = append(list, c.s.globalEntry(o, c.version), changeEventEntry(o, c.version))
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i]["name"].(string) < list[j]["name"].(string) })
	writeJSON(c.w, http.StatusOK, map[string]any{"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list})
}

// describe is GET /sobjects/X/describe, with If-Modified-Since: the schema never changes while the org runs.
func (c *call) describe(o *Object) {
	if ims := c.r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !t.Before(startTime.Truncate(time.Second)) {
			c.w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	d := c.s.globalEntry(o, c.version)
	base := "/services/data/v" + c.version + "/sobjects/" + o.Name
	urls := d["urls"].(map[string]string)
	urls["compactLayouts"] = base + "/describe/compactLayouts"
	urls["layouts"] = base + "/describe/layouts"
	urls["quickActions"] = base + "/quickActions"
	urls["listviews"] = base + "/listviews"
	fields := make([]map[string]any, 0, len(o.Fields))
	for _, f := range o.Fields {
		if f.hidden {
			continue
		}
		fields = append(fields, describeField(o, f))
	}
	d["fields"] = fields
	children := []map[string]any{}
	for _, ch := range o.children {
		var rel any
		if ch.RelationshipName != "" {
			rel = ch.RelationshipName
		}
		children = append(children, map[string]any{
			"childSObject": ch.Object, "field": ch.Field, "relationshipName": rel, "cascadeDelete": ch.cascade,
			"restrictedDelete": false, "deprecatedAndHidden": false, "junctionIdListNames": []string{},
			"junctionReferenceTo": []string{},
		})
	}
	d["childRelationships"] = children
	d["recordTypeInfos"] = []map[string]any{{
		"active": true, "available": true, "defaultRecordTypeMapping": true, "developerName": "Master", "master": true,
		"name": "Master", "recordTypeId": "012000000000000AAA",
		"urls": map[string]string{"layout": base + "/describe/layouts/012000000000000AAA"},
	}}
	d["actionOverrides"] = []any{}
	d["namedLayoutInfos"] = []any{}
	d["supportedScopes"] = []map[string]string{{"label": "All " + strings.ToLower(o.LabelPlural), "name": "everything"}, {"label": "My " + strings.ToLower(o.LabelPlural), "name": "mine"}}
	d["compactLayoutable"] = true
	d["listviewable"] = nil
	d["lookupLayoutable"] = nil
	d["searchLayoutable"] = true
	d["networkScopeFieldName"] = nil
	d["sobjectDescribeOption"] = "FULL"
	c.w.Header().Set("Last-Modified", startTime.UTC().Format(http.TimeFormat))
	writeJSON(c.w, http.StatusOK, d)
}

// startTime is when the schema came to be; describe answers are unmodified since.
var startTime = time.Now()

var soapTypes = map[string]string{
	"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "int": "xsd:int", "double": "xsd:double",
	"currency": "xsd:double", "percent": "xsd:double", "date": "xsd:date", "datetime": "xsd:dateTime",
	"time": "xsd:time", "address": "urn:address",
}

// describeField returns the complete field descriptor: every key Salesforce sends, nullable ones as null.
func describeField(o *Object, f *Field) map[string]any {
	soap := soapTypes[f.Type]
	if soap == "" {
		soap = "xsd:string"
	}
	text := soap == "xsd:string"
	byteLength := 0
	if text {
		byteLength = f.Length * 3
	}
	if f.Type == "id" || f.Type == "reference" {
		byteLength = 18
	}
	digits, precision, scale := 0, 0, 0
	switch f.Type {
	case "int":
		digits = f.Precision
	case "double", "currency", "percent":
		precision, scale = f.Precision, f.Scale
	}
	length := 0
	if text || f.Type == "id" || f.Type == "reference" {
		length = f.Length
	}
	picklist := []map[string]any{}
	for _, v := range f.Picklist {
		isDefault := f.Default == v
		picklist = append(picklist, map[string]any{"active": true, "defaultValue": isDefault, "label": v, "validFor": nil, "value": v})
	}
	refTo := f.ReferenceTo
	if refTo == nil {
		refTo = []string{}
	}
	var relName, compound, extra, defVal any
	if f.RelationshipName != "" {
		relName = f.RelationshipName
	}
	if f.CompoundName != "" {
		compound = f.CompoundName
	}
	switch {
	case f.Type == "textarea" && f.Length <= 255:
		extra = "plaintextarea"
	case f.Type == "textarea":
		extra = "plaintextarea"
	case f.CompoundName == "Name" || (len(f.compound) > 0 && f.Name == "Name"):
		extra = "personname"
	}
	if f.Type == "boolean" && f.Default != nil {
		defVal = f.Default
	}
	longText := f.Type == "textarea" && f.Length > 255
	filterable := !longText && f.Type != "address"
	sortable := filterable && f.Type != "multipicklist"
	groupable := sortable && f.Type != "double" && f.Type != "currency" && f.Type != "percent" && f.Type != "datetime" && f.Type != "time"
	aggregatable := filterable && f.Type != "boolean" && f.Type != "multipicklist"
	return map[string]any{
		"aggregatable": aggregatable, "aiPredictionField": false, "autoNumber": f.AutoNumber, "byteLength": byteLength,
		"calculated": f.Calculated, "calculatedFormula": nil, "cascadeDelete": false, "caseSensitive": f.CaseSensitive,
		"compoundFieldName": compound, "controllerName": nil, "createable": f.Createable, "custom": f.Custom,
		"defaultValue": defVal, "defaultValueFormula": nil, "defaultedOnCreate": f.DefaultedOnCreate,
		"dependentPicklist": false, "deprecatedAndHidden": false, "digits": digits, "displayLocationInDecimal": false,
		"encrypted": false, "externalId": f.ExternalID, "extraTypeInfo": extra, "filterable": filterable,
		"filteredLookupInfo": nil, "formulaTreatNullNumberAsZero": false, "groupable": groupable,
		"highScaleNumber": false, "htmlFormatted": false, "idLookup": f.IDLookup, "inlineHelpText": nil,
		"label": f.Label, "length": length, "mask": nil, "maskType": nil, "name": f.Name, "nameField": f.NameField,
		"namePointing": false, "nillable": f.Nillable, "permissionable": f.Custom && f.Nillable,
		"picklistValues": picklist, "polymorphicForeignKey": false, "precision": precision,
		"queryByDistance": false, "referenceTargetField": nil, "referenceTo": refTo, "relationshipName": relName,
		"relationshipOrder": nil, "restrictedDelete": false, "restrictedPicklist": f.Restricted, "scale": scale,
		"searchPrefilterable": f.Type == "reference", "soapType": soap, "sortable": sortable, "type": f.Type,
		"unique": f.Unique, "updateable": f.Updateable, "writeRequiresMasterRead": false,
	}
}
