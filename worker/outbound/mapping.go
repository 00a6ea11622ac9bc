package outbound

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/worker/feed"
	"github.com/pgforce/pgforce/worker/mappings"
)

// Mapping is what the outbound side needs of a read_write mapping.
type Mapping struct {
	ID          int
	SObject     string
	Schema      string
	TableName   string
	Fields      []string // Salesforce API names the user listed
	UpsertField string   // "" when the mapping has none
	Conflict    string
	Paused      bool
	ResumedAt   *time.Time // the last resume of the mapping or of its org
	// InboundWatermark is the newest Salesforce change the inbound side
	// has applied (see checkCatchUp).
	InboundWatermark *time.Time
	// Polled says Salesforce's changes reach the table by polling
	// (pgforce.mapping.inbound_mode as the inbound side last chose it, or
	// inbound = 'poll' before it has): only every poll_interval, so that
	// updates are checked against Salesforce before they are sent (see
	// checkPolled).
	Polled bool
	// BulkThreshold is pgforce.mapping.bulk_threshold: the backlog from
	// which changes go through Bulk API 2.0 ingest; 0 when never.
	BulkThreshold int
	// Columns is pgforce.mapping.columns as the inbound side wrote it after
	// describe; nil while the table does not exist yet.
	Columns []Column
	// RelColumns are the table's external-id relationship columns, named
	// <lookup>__r__<extid> as in Heroku Connect.
	RelColumns []string
	// HardDelete says the rows of records deleted in Salesforce are
	// deleted rather than flagged isdeleted.
	HardDelete bool
	// StaleCapture says the table has a relationship column that capture
	// does not record yet: one added since the triggers were installed.
	StaleCapture bool
}

// checkedBeforeSend says m's updates are checked against Salesforce before
// every send (see checkPolled): it is polled, and its policy may let a
// Salesforce edit win.
func (m *Mapping) checkedBeforeSend() bool {
	return m.Polled && m.Conflict != "postgres_wins"
}

// Column is one described field, as the inbound side's describe stores it
// in pgforce.mapping.columns.
type Column = mappings.Column

// keyPrefix is the first three characters of the object's Ids, "" when
// the describe did not say.
func (m *Mapping) keyPrefix() string {
	for _, c := range m.Columns {
		if strings.EqualFold(c.Name, "Id") {
			return c.KeyPrefix
		}
	}
	return ""
}

// Table returns the quoted, schema-qualified table name.
func (m *Mapping) Table() string { return pgx.Identifier{m.Schema, m.TableName}.Sanitize() }

// systemColumns are never written to Salesforce: Salesforce sets them.
var systemColumns = map[string]bool{
	"id": true, "sfid": true, "systemmodstamp": true, "isdeleted": true, "createddate": true,
	"_hc_lastop": true, "_hc_err": true, "lastmodifieddate": true, "createdbyid": true,
	"lastmodifiedbyid": true,
}

// column returns the described column for a Postgres column name.
func (m *Mapping) column(pg string) (Column, bool) {
	for _, c := range m.Columns {
		if strings.ToLower(c.Name) == pg {
			return c, true
		}
	}
	for _, f := range m.Fields {
		if strings.ToLower(f) == pg {
			return Column{Name: f}, true
		}
	}
	return Column{}, false
}

// writable reports whether a field may be sent for an insert (or update).
// sendValue is how a mapped column's value goes to Salesforce in an insert
// or an update: its field's API name and the value as the REST API writes
// it. ok is false for what is not sent: system columns, columns that map
// no field the operation may write, and empty values of an insert.
// Relationship columns are the caller's (see buildRecords).
func (m *Mapping) sendValue(pg string, v any, insert bool) (name string, value any, ok bool, err error) {
	if systemColumns[pg] {
		return "", nil, false, nil
	}
	col, found := m.column(pg)
	if !found || !writable(col, insert) || insert && v == nil {
		return col.Name, nil, false, nil
	}
	value, err = sfValue(col.Type, v)
	return col.Name, value, err == nil, err
}

// writable says whether Salesforce lets c be set on create (insert) or on
// update.
func writable(c Column, insert bool) bool {
	switch c.Type {
	case "address", "location", "id":
		return false // compound values are written through their parts
	}
	if c.Calculated {
		return false
	}
	if insert && c.Createable != nil {
		return *c.Createable
	}
	if !insert && c.Updateable != nil {
		return *c.Updateable
	}
	return true
}

// readOnly says the describe marks c as a field Salesforce does not let
// this user set on create (insert) or on update: a formula, or one its
// field-level security makes read-only. Compound fields and the Id are
// written otherwise, not refused.
func readOnly(c Column, insert bool) bool {
	switch c.Type {
	case "address", "location", "id", "":
		return false
	}
	return !writable(c, insert)
}

// isRelColumn says a column is a Heroku Connect relationship column,
// <lookup>__r__<extid>: no Salesforce field's name holds "__r__", and a
// column added since m was read is known by its name alone.
func isRelColumn(col string) bool { return strings.Contains(col, "__r__") }

// DefaultOrg is the org a worker serves when Options.Org is empty, the one
// pgforce install creates.
const DefaultOrg = "default"

// SlotName is the replication slot of the outbound feed of org's worker on
// database. A slot streams to one session at a time: another org's worker
// on the same database found the default org's slot taken and polled, so
// every other org has one of its own.
func SlotName(database, org string) string {
	if org == "" || org == DefaultOrg {
		return feed.SlotName(database)
	}
	return feed.OrgSlotName(database, org)
}

const selectMappings = `
SELECT m.id, m.sobject, o.schema_name, m.table_name, m.fields, coalesce(m.upsert_field, ''),
       m.conflict, m.paused OR o.paused, coalesce(m.bulk_threshold, 0), m.columns, m.resumed_at, m.inbound_watermark, m.hard_delete,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', o.schema_name, m.table_name))
                   AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\_\_r\_\_%'), '{}'),
       m.mode = 'read_write' AND EXISTS (
           SELECT FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', o.schema_name, m.table_name))
             AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\_\_r\_\_%'
             AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger tg
                             WHERE tg.tgrelid = a.attrelid AND tg.tgname = 'pgforce_status_update' AND a.attnum = ANY (tg.tgattr::int2[]))),
       coalesce(m.inbound_mode, m.inbound) = 'poll'
FROM pgforce.mapping m JOIN pgforce.org o ON o.name = m.org
WHERE m.columns IS NOT NULL AND m.org = $1
  AND (m.mode = 'read_write'
       OR EXISTS (SELECT FROM pgforce.outbox ob WHERE ob.mapping_id = m.id)
       OR EXISTS (SELECT FROM pgforce.error e WHERE e.mapping_id = m.id AND e.state = 'retrying' AND e.direction = 'outbound'))
ORDER BY m.id`

// loadMappings reads the read_write mappings of one org whose tables
// exist, parents before children (see order), and the read_only ones that
// still have changes to send or reverts to carry out: as with Heroku
// Connect, making a mapping read_only stops capture, not the changes it
// captured before (they waited for ever, and went out if the mapping was
// ever made read_write again, over whatever Salesforce held by then). A worker serves one org: its
// Salesforce session is that org's, so another org's changes must never go
// through it. An empty org is the default one.
func loadMappings(ctx context.Context, q querier, org string) ([]*Mapping, error) {
	if org == "" {
		org = DefaultOrg
	}
	rows, err := q.Query(ctx, selectMappings, org)
	if err != nil {
		return nil, fmt.Errorf("outbound: read pgforce.mapping: %w", err)
	}
	defer rows.Close()
	var out []*Mapping
	for rows.Next() {
		m := &Mapping{}
		var cols []byte
		if err := rows.Scan(&m.ID, &m.SObject, &m.Schema, &m.TableName, &m.Fields, &m.UpsertField,
			&m.Conflict, &m.Paused, &m.BulkThreshold, &cols, &m.ResumedAt, &m.InboundWatermark, &m.HardDelete, &m.RelColumns, &m.StaleCapture, &m.Polled); err != nil {
			return nil, fmt.Errorf("outbound: read pgforce.mapping: %w", err)
		}
		if err := json.Unmarshal(cols, &m.Columns); err != nil {
			return nil, fmt.Errorf("outbound: mapping %d (%s): columns: %w", m.ID, m.SObject, err)
		}
		// The mapping takes upsert_field in any case, as Salesforce does;
		// the records' fields are spelled as the describe spells them, and
		// looked up under another spelling no insert found its external
		// id, so every one went as a plain create.
		if c, ok := m.column(strings.ToLower(m.UpsertField)); ok && m.UpsertField != "" {
			m.UpsertField = c.Name
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbound: read pgforce.mapping: %w", err)
	}
	return order(out), nil
}

// mappingsByObject indexes mappings by lower-cased sObject name.
func mappingsByObject(ms []*Mapping) map[string]*Mapping {
	byObject := make(map[string]*Mapping, len(ms))
	for _, m := range ms {
		byObject[strings.ToLower(m.SObject)] = m
	}
	return byObject
}

// order sorts mappings so that a parent object is written before the
// objects that refer to it (Account before Contact), which lets a child
// inserted in the same Postgres transaction as its parent find the
// parent's new Id. Cycles are broken by id order.
func order(ms []*Mapping) []*Mapping {
	byObject := mappingsByObject(ms)
	deps := map[int][]*Mapping{}
	for _, m := range ms {
		for _, p := range parentsOf(m, byObject) {
			if p != m {
				deps[m.ID] = append(deps[m.ID], p)
			}
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	var out []*Mapping
	state := map[int]int{} // 1 visiting, 2 done
	var visit func(m *Mapping)
	visit = func(m *Mapping) {
		if state[m.ID] != 0 {
			return
		}
		state[m.ID] = 1
		for _, p := range deps[m.ID] {
			visit(p)
		}
		state[m.ID] = 2
		out = append(out, m)
	}
	for _, m := range ms {
		visit(m)
	}
	return out
}

// parentsOf lists the mapped objects m refers to: through reference columns
// (referenceTo, or the standard <Parent>Id naming) and through external-id
// relationship columns (<lookup>__r__<extid>).
func parentsOf(m *Mapping, byObject map[string]*Mapping) []*Mapping {
	var out []*Mapping
	add := func(name string) {
		if p, ok := byObject[strings.ToLower(name)]; ok {
			out = append(out, p)
		}
	}
	for _, c := range m.Columns {
		for _, r := range c.ReferenceTo {
			add(r)
		}
		if c.Type == "reference" && len(c.ReferenceTo) == 0 && strings.HasSuffix(strings.ToLower(c.Name), "id") {
			add(c.Name[:len(c.Name)-2])
		}
	}
	for _, col := range m.RelColumns {
		if t, ok := relTargetOf(m, col, byObject); ok && t.parent != nil {
			out = append(out, t.parent)
		}
	}
	return out
}

// relTarget is what an external-id relationship column refers to.
type relTarget struct {
	parent       *Mapping // the parent's mapping, nil when it is not mapped
	parentObject string   // Salesforce object of the parent
	relName      string   // relationship name on the child (Account, Period__r)
	lookupField  string   // the child's lookup field (AccountId), "" if unknown
	extField     string   // the parent's external id field (API name if known)
}

// relTargetOf interprets a column named <lookup>__r__<extid>: the lookup is
// the lookup field (accountid, period__c) or the relationship's name
// without suffix (account, period), the rest is the parent's external id.
func relTargetOf(m *Mapping, col string, byObject map[string]*Mapping) (relTarget, bool) {
	i := strings.Index(col, "__r__")
	if i <= 0 || i+5 >= len(col) {
		return relTarget{}, false
	}
	lookup, ext := col[:i], col[i+5:]
	t := relTarget{extField: ext}
	for _, c := range m.Columns {
		name := strings.ToLower(c.Name)
		switch {
		case name == lookup+"id" || (name == lookup && strings.HasSuffix(name, "id") && !strings.HasSuffix(name, "__c")):
			t.lookupField = c.Name
			t.relName = c.Name[:len(c.Name)-2]
		case name == lookup+"__c" || (name == lookup && strings.HasSuffix(name, "__c")):
			t.lookupField = c.Name
			t.relName = c.Name[:len(c.Name)-3] + "__r"
		default:
			continue
		}
		if c.Relation != "" {
			t.relName = c.Relation
		}
		if len(c.ReferenceTo) > 0 {
			t.parentObject = c.ReferenceTo[0]
		} else if strings.HasSuffix(name, "id") {
			t.parentObject = t.relName
		}
		break
	}
	if t.relName == "" {
		// No lookup column mapped: a standard relationship is named like
		// its parent object.
		t.relName = lookup
		if p, ok := byObject[lookup]; ok {
			t.relName = p.SObject
			t.parentObject = p.SObject
		}
	}
	if t.parentObject != "" {
		t.parent = byObject[strings.ToLower(t.parentObject)]
	} else {
		// A custom lookup without referenceTo: the one mapped object that
		// lists the external id field.
		for _, p := range byObject {
			for _, f := range p.Fields {
				if strings.ToLower(f) == ext {
					if t.parent != nil && t.parent != p {
						return relTarget{}, false // ambiguous
					}
					t.parent = p
				}
			}
		}
		if t.parent != nil {
			t.parentObject = t.parent.SObject
		}
	}
	if t.parent != nil {
		for _, f := range t.parent.Fields {
			if strings.ToLower(f) == ext {
				t.extField = f
			}
		}
	}
	return t, t.parentObject != ""
}
