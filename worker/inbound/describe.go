package inbound

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgforce/pgforce/worker/mappings"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// systemFields are synced for every mapping whatever it lists, into
// Heroku Connect's sfid, systemmodstamp, isdeleted and createddate.
var systemFields = []string{"Id", "SystemModstamp", "IsDeleted", "CreatedDate"}

// ConfigError is a mapping the worker cannot sync until the user fixes it;
// Detail goes into pgforce.mapping.state_detail and names the fix.
type ConfigError struct {
	Field  string // the offending field, or "" for the object itself
	Detail string
}

func (e *ConfigError) Error() string { return e.Detail }

// componentOf is the name under which a change event nests field, a part of
// compound, inside it: City for BillingCity of BillingAddress (City too
// for the parts of a standard Address), Latitude for Loc__Latitude__s of a
// custom geolocation Loc__c.
func componentOf(field, compound string) string {
	if base, custom := strings.CutSuffix(compound, "__c"); custom {
		return strings.TrimSuffix(strings.TrimPrefix(field, base+"__"), "__s")
	}
	return strings.TrimPrefix(field, strings.TrimSuffix(compound, "Address"))
}

// describeMapping checks the mapping against the object's describe and
// returns the columns to pass to pgforce.ensure_table, plus the field list
// with compound fields (BillingAddress) replaced by their components, which
// is what gets queried and stored.
func describeMapping(ctx context.Context, sf *salesforce.Client, m *mappings.Mapping) ([]mappings.Column, []string, error) {
	d, err := sf.Describe(ctx, m.SObject)
	if salesforce.IsNotFound(err) {
		return nil, nil, &ConfigError{Detail: fmt.Sprintf(
			"Salesforce has no object %s visible to the integration user. Check the API name in Setup > Object Manager (custom objects end in __c) and the user's permissions, then fix it: UPDATE pgforce.mapping SET sobject = '<ApiName>' WHERE id = %d;",
			m.SObject, m.ID)}
	}
	if err != nil {
		return nil, nil, err
	}
	if !d.Queryable {
		return nil, nil, &ConfigError{Detail: fmt.Sprintf(
			"object %s is not queryable by the integration user, so it cannot be synced. Grant Read on it in the user's profile or permission set, or delete the mapping: DELETE FROM pgforce.mapping WHERE id = %d;",
			d.Name, m.ID)}
	}
	var cols []mappings.Column
	var fields []string
	seen := map[string]bool{}
	add := func(f *salesforce.Field) {
		key := strings.ToLower(f.Name)
		if seen[key] {
			return
		}
		seen[key] = true
		// What the outbound side may write: it sent the whole row on a
		// retry, read-only fields (CaseNumber, a Contact's Name) too, which
		// Salesforce refused, and every later change of the record with it.
		createable, updateable := f.Createable, f.Updateable
		c := mappings.Column{Name: f.Name, Type: f.Type, Length: f.Length, Precision: f.Precision, Scale: f.Scale,
			Createable: &createable, Updateable: &updateable, Calculated: f.Calculated,
			ReferenceTo: f.ReferenceTo, Relation: f.RelationshipName}
		if strings.EqualFold(f.Name, "Id") {
			c.KeyPrefix = d.KeyPrefix
		}
		if f.Type == "int" && c.Precision == 0 {
			c.Precision = f.Digits
		}
		if f.CompoundFieldName != "" {
			c.Compound = f.CompoundFieldName
			c.Component = componentOf(f.Name, f.CompoundFieldName)
		}
		cols = append(cols, c)
		fields = append(fields, f.Name)
	}
	for _, name := range systemFields {
		f, ok := d.Field(name)
		if !ok && name == "IsDeleted" {
			// User, RecordType and others that are deactivated rather than
			// deleted have none, and Heroku Connect syncs them: their
			// rows' isdeleted stays false.
			continue
		}
		if !ok {
			return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
				"object %s has no %s field, which pgforce needs to sync it (objects without SystemModstamp cannot be replicated); delete the mapping: DELETE FROM pgforce.mapping WHERE id = %d;",
				d.Name, name, m.ID)}
		}
		add(f)
	}
	for _, name := range m.Fields {
		f, ok := d.Field(name)
		if !ok {
			return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
				"field %s does not exist on %s or is not visible to the integration user (field-level security). Check its API name in Object Manager (custom fields end in __c), or remove it: UPDATE pgforce.mapping SET fields = array_remove(fields, '%s') WHERE id = %d;",
				name, d.Name, name, m.ID)}
		}
		if f.Queryable != nil && !*f.Queryable {
			return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
				"field %s of %s is not queryable, so it cannot be synced; remove it: UPDATE pgforce.mapping SET fields = array_remove(fields, '%s') WHERE id = %d;",
				f.Name, d.Name, name, m.ID)}
		}
		if m.Mode == "read_write" && strings.EqualFold(name, m.UpsertField) && !f.ExternalID {
			// Salesforce upserts only by an External ID field: every
			// insert failed, one error per row.
			return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
				"upsert_field %s of %s is not an External ID field in Salesforce, which upserts only by one. Mark it External ID (and Unique) in Object Manager, or sync without it: UPDATE pgforce.mapping SET upsert_field = NULL WHERE id = %d;",
				f.Name, d.Name, m.ID)}
		}
		if f.Type == "address" || f.Type == "location" {
			// A compound field is read-only and cannot be bulk-queried;
			// its components carry the same data as plain columns.
			n := 0
			for i := range d.Fields {
				if strings.EqualFold(d.Fields[i].CompoundFieldName, f.Name) {
					add(&d.Fields[i])
					n++
				}
			}
			if n == 0 {
				return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
					"compound field %s of %s has no component fields in the describe result; list the components (e.g. BillingStreet, BillingCity) instead: UPDATE pgforce.mapping SET fields = array_remove(fields, '%s') WHERE id = %d;",
					f.Name, d.Name, name, m.ID)}
			}
			continue
		}
		add(f)
	}
	return cols, fields, nil
}

// userFields are the fields the mapping lists after expanding compounds:
// the columns minus the system fields, which the user never needs to list.
func userFields(cols []mappings.Column) []string {
	var out []string
	for _, c := range cols {
		if isSystem(c.Name) {
			continue
		}
		out = append(out, c.Name)
	}
	return out
}

func isSystem(name string) bool {
	for _, s := range systemFields {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

var errStopped = errors.New("inbound: mapping stopped")

// fieldsGone handles a query Salesforce refused with INVALID_FIELD: a
// mapped field was deleted, or the integration user lost its field-level
// security, since the mapping was described. The describe is run again,
// and when it no longer finds a mapped field the mapping goes to error
// with the fix in state_detail (it stayed 'synced', retrying the same
// refused query for ever). It reports whether it did so.
func (r *runner) fieldsGone(ctx context.Context, err error) bool {
	var apiErr *salesforce.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != "INVALID_FIELD" {
		return false
	}
	m, gerr := mappings.Get(ctx, r.s.pool, r.id)
	if gerr != nil {
		return false
	}
	_, _, derr := describeMapping(ctx, r.s.sf, m)
	var ce *ConfigError
	if !errors.As(derr, &ce) {
		return false
	}
	r.log.Warn("inbound: mapping cannot be synced until it is fixed", "sobject", m.SObject, "detail", ce.Detail)
	return mappings.SetState(ctx, r.s.pool, m.ID, mappings.StateError, ce.Detail) == nil
}
