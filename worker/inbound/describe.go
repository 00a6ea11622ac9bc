package inbound

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

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
	// TableShape is set when the mapping's table is what was refused
	// (pgforce._table_shape before ensure_table ran): its fix is DDL,
	// which edits no mapping, so the worker watches the table for it
	// instead (see setError).
	TableShape string
}

func (e *ConfigError) Error() string { return e.Detail }

// setError puts mapping id in error with ce's fix in state_detail; like
// mappings.SetState it leaves a paused mapping paused. A refused table's
// shape is kept with it: pgforce.inbound_recheck_tables, which the
// service runs on its timer, sends the mapping back to be described once
// the table has changed, as an edit of the mapping does for the other
// fixes. Left in error until the user edited the mapping, one whose fix
// was the ALTER TABLE its state_detail named stayed there after it.
func setError(ctx context.Context, pool *pgxpool.Pool, id int, ce *ConfigError) error {
	if _, err := pool.Exec(ctx, `UPDATE pgforce.mapping SET state = 'error', state_detail = $2, error_table_shape = nullif($3, '')
		WHERE id = $1 AND NOT paused`, id, ce.Detail, ce.TableShape); err != nil {
		return fmt.Errorf("inbound: set mapping %d in error: %w", id, err)
	}
	return nil
}

// removeField is the statement that takes field out of mapping m, for a
// state_detail. It names the field as m lists it, since array_remove
// compares case and the describe does not; and when the field is the
// upsert field it drops that too, which the mapping refuses to keep
// outside its fields: without it the statement the user was told to run
// failed ("upsert_field ... is not in fields").
func removeField(m *mappings.Mapping, field string) string {
	return removeFields(m, []string{field})
}

// removeFields is removeField for several fields at once.
func removeFields(m *mappings.Mapping, fields []string) string {
	expr, upsert := "fields", ""
	for _, field := range fields {
		for _, f := range m.Fields {
			if strings.EqualFold(f, field) {
				field = f
				break
			}
		}
		if strings.EqualFold(field, m.UpsertField) {
			upsert = ", upsert_field = NULL"
		}
		expr = fmt.Sprintf("array_remove(%s, '%s')", expr, field)
	}
	return fmt.Sprintf("UPDATE pgforce.mapping SET fields = %s%s WHERE id = %d;", expr, upsert, m.ID)
}

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
	// Every missing field at once: named one at a time, a mapping with
	// several typos took a fix and a describe for each.
	var missing []string
	for _, name := range m.Fields {
		if _, ok := d.Field(name); !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 1 {
		return nil, nil, &ConfigError{Field: missing[0], Detail: fmt.Sprintf(
			"fields %s do not exist on %s or are not visible to the integration user (field-level security). Check their API names in Object Manager (custom fields end in __c), or remove them: %s Once they exist in Salesforce and the integration user can read them, describe the object again with SELECT pgforce.reload(%d);",
			strings.Join(missing, ", "), d.Name, removeFields(m, missing), m.ID)}
	}
	for _, name := range m.Fields {
		f, ok := d.Field(name)
		if !ok {
			return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
				"field %s does not exist on %s or is not visible to the integration user (field-level security). Check its API name in Object Manager (custom fields end in __c), or remove it: %s Once it exists in Salesforce and the integration user can read it, describe the object again with SELECT pgforce.reload(%d);",
				name, d.Name, removeField(m, name), m.ID)}
		}
		if f.Queryable != nil && !*f.Queryable {
			return nil, nil, &ConfigError{Field: name, Detail: fmt.Sprintf(
				"field %s of %s is not queryable, so it cannot be synced; remove it: %s",
				f.Name, d.Name, removeField(m, name))}
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
					"compound field %s of %s has no component fields in the describe result; list the components (e.g. BillingStreet, BillingCity) instead: %s",
					f.Name, d.Name, removeField(m, name))}
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
	return setError(ctx, r.s.pool, m.ID, ce) == nil
}
