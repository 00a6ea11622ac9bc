package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgforce/pgforce/sim/cometd"
)

// record is one stored row: values indexed by Field.Index. A record is never modified once it is in a
// table; an update builds a new record and swaps the pointer (copy on write), so a query that copied the
// table's pointer slice reads a consistent snapshot without holding any lock.
type record struct {
	vals []any
}

func (r *record) id() string { return r.vals[0].(string) }

type table struct {
	obj  *Object
	rows []*record        // insertion order; nil once hard-deleted
	pos  map[string]int32 // id -> index in rows
	// keys indexes unique and external id fields of live records: normalised value -> ids.
	keys map[*Field]map[string][]string
	// refs indexes the cascade-delete lookups of live records: parent id -> ids of the records naming it,
	// so that a parent's delete finds its children without a pass over every record of their object.
	refs map[*Field]map[string][]string
	del  int // slot of IsDeleted, -1 for objects without a recycle bin (User)
}

func newTable(o *Object) *table {
	t := &table{obj: o, pos: map[string]int32{}, keys: map[*Field]map[string][]string{}, refs: map[*Field]map[string][]string{}, del: -1}
	for _, f := range o.Fields {
		if f.Unique || f.ExternalID {
			t.keys[f] = map[string][]string{}
		}
		if f.CascadeDelete && f.Index >= 0 {
			t.refs[f] = map[string][]string{}
		}
	}
	if f := o.Field("IsDeleted"); f != nil {
		t.del = f.Index
	}
	return t
}

func (t *table) deleted(r *record) bool { return t.del >= 0 && r.vals[t.del] == true }

func keyOf(f *Field, v any) (string, bool) {
	if v == nil {
		return "", false
	}
	s := fmt.Sprint(v)
	if n, ok := v.(json.Number); ok {
		s = string(n)
	}
	if !f.CaseSensitive {
		s = strings.ToLower(s)
	}
	return s, true
}

func (t *table) indexAdd(r *record) {
	if t.deleted(r) {
		return
	}
	for f, m := range t.keys {
		if k, ok := keyOf(f, r.vals[f.Index]); ok {
			m[k] = append(m[k], r.id())
		}
	}
	for f, m := range t.refs {
		if k, ok := r.vals[f.Index].(string); ok {
			m[k] = append(m[k], r.id())
		}
	}
}

func (t *table) indexRemove(r *record) {
	if t.deleted(r) {
		return
	}
	for f, m := range t.keys {
		if k, ok := keyOf(f, r.vals[f.Index]); ok {
			ids := slices.DeleteFunc(m[k], func(s string) bool { return s == r.id() })
			if len(ids) == 0 {
				delete(m, k)
			} else {
				m[k] = ids
			}
		}
	}
	for f, m := range t.refs {
		if k, ok := r.vals[f.Index].(string); ok {
			ids := slices.DeleteFunc(m[k], func(s string) bool { return s == r.id() })
			if len(ids) == 0 {
				delete(m, k)
			} else {
				m[k] = ids
			}
		}
	}
}

func (t *table) get(id string) *record {
	if i, ok := t.pos[id]; ok {
		return t.rows[i]
	}
	return nil
}

// APIError is one Salesforce error: errorCode (statusCode in collections), message and the fields involved.
type APIError struct {
	Code    string
	Message string
	Fields  []string
}

// fieldError is a validation failure tied to one field.
type fieldError struct {
	code, msg, field string
}

func (e *fieldError) Error() string { return e.msg }

func (e *fieldError) api() APIError {
	fields := []string{}
	if e.field != "" {
		fields = []string{e.field}
	}
	return APIError{Code: e.code, Message: e.msg, Fields: fields}
}

// Op is one record operation of a request.
type Op struct {
	Kind     string // insert, update, upsert, delete, undelete, hardDelete
	Object   *Object
	ID       string // update, delete, undelete, hardDelete: the target (15 or 18 characters)
	ExtField *Field // upsert: the matching field (Id or an external id field)
	ExtValue string
	// Fields are the values to write, keyed by field name as the client spelled it. Values are JSON values
	// (decoded with UseNumber) or, from the Bulk API, csvCell strings; nil means null.
	Fields map[string]any
	// Order lists the keys of Fields in request order, so that errors name the first bad field as
	// Salesforce does; nil means map order.
	Order []string
}

// csvCell is a value from a Bulk API CSV file, converted by the field's text rules.
type csvCell string

// Result is the outcome of one Op.
type Result struct {
	ID      string
	Created bool
	Errors  []APIError
	// Matches lists the records an upsert matched when it matched several (HTTP 300).
	Matches []string
	// NotFound is set when the target record does not exist at all (REST answers 404).
	NotFound bool
}

// OK reports whether the operation succeeded.
func (r Result) OK() bool { return len(r.Errors) == 0 }

// Tx describes who commits a change and through which API, for system fields and change events.
type Tx struct {
	User   string // user id
	Origin string // changeOrigin, e.g. com/salesforce/api/rest/62.0;client=worker; empty for UI edits
}

// Store holds every record of the org.
// cascadedChild is a record deleted with its parent (see txn.cascadeDelete), which an undelete of the
// parent restores.
type cascadedChild struct {
	tbl *table
	id  string
}

type Store struct {
	// cascaded lists, by parent Id, the records a delete of the parent deleted with it.
	cascaded map[string][]cascadedChild
	// cascadedBy names, by child Id, the parent whose delete deleted the child (and still holds it in
	// the recycle bin): a child undeleted on its own since, and maybe deleted again on its own, is not
	// the parent's to restore or purge.
	cascadedBy map[string]string
	mu         sync.RWMutex
	cat        *Catalog
	tables     map[*Object]*table
	clock      func() time.Time

	lastStamp    time.Time
	commitNumber int64
	txCounter    uint64
	// publish delivers a committed transaction's encoded events, in commit order (see publishBatch). It
	// must copy their payloads, whose buffer is reused once it returns.
	publish func(events ...cometd.RawEvent)
	// pubTurn orders publication: a commit takes the next ticket under the write lock, encodes its events
	// after releasing it and publishes once every earlier ticket has, so replay order is commit order.
	pubMu     sync.Mutex
	pubCond   *sync.Cond
	pubTicket uint64 // next ticket to hand out (under mu)
	pubNext   uint64 // ticket whose turn it is (under pubMu)
	// overflow is the number of changes in one transaction above which a single GAP_OVERFLOW event per
	// entity replaces the individual events, as Salesforce does for very large transactions.
	overflow int
}

func newStore(cat *Catalog, clock func() time.Time) *Store {
	s := &Store{cat: cat, clock: clock, overflow: 100000, commitNumber: 1100670838000}
	s.pubCond = sync.NewCond(&s.pubMu)
	s.resetTables()
	return s
}

func (s *Store) resetTables() {
	s.tables = map[*Object]*table{}
	s.cascaded = map[string][]cascadedChild{}
	s.cascadedBy = map[string]string{}
	for _, o := range s.cat.objects {
		s.tables[o] = newTable(o)
	}
}

// stamp returns the commit time of a new transaction: the clock in milliseconds, moved forward when needed
// so that SystemModstamp strictly increases from one commit to the next.
func (s *Store) stamp() time.Time {
	now := s.clock().UTC().Truncate(time.Millisecond)
	if !now.After(s.lastStamp) {
		now = s.lastStamp.Add(time.Millisecond)
	}
	s.lastStamp = now
	return now
}

// txn is one transaction in progress, holding the write lock.
type txn struct {
	s      *Store
	tx     Tx
	at     time.Time
	undo   []func()
	events []pendingEvent
	done   bool
	// noUndo skips the undo log for bulk loads that cannot roll back (Seed).
	noUndo bool
	// overflowed lists the entities of a transaction that outgrew Store.overflow; their events were
	// dropped in favour of one GAP_OVERFLOW each.
	overflowed []*Object
	// batch is what commit leaves to publish once the lock is released.
	batch *eventBatch
}

func (t *txn) pushUndo(f func()) {
	if !t.noUndo {
		t.undo = append(t.undo, f)
	}
}

func (t *txn) addEvent(e pendingEvent) {
	if t.overflowed != nil {
		if !slices.Contains(t.overflowed, e.obj) {
			t.overflowed = append(t.overflowed, e.obj)
		}
		return
	}
	t.events = append(t.events, e)
	if len(t.events) > t.s.overflow {
		for _, ev := range t.events {
			if !slices.Contains(t.overflowed, ev.obj) {
				t.overflowed = append(t.overflowed, ev.obj)
			}
		}
		t.events = nil
	}
}

// pendingEvent is a change event of a transaction in progress. Its field values are read from vals, the
// new record's value slice, which is immutable once the record is stored (updates copy on write), so the
// event can be encoded after the transaction released the lock.
type pendingEvent struct {
	obj     *Object
	kind    string
	ids     []string
	vals    []any    // nil: the event carries no fields (DELETE, gaps)
	only    []*Field // UPDATE: the changed fields (nulls included); nil: every non-null field
	changed []string
}

type txnKey struct{}

// withTxn returns a context that carries an open transaction: store calls made with it join the
// transaction instead of locking, which is how a Composite request runs its subrequests as one unit.
func withTxn(ctx context.Context, t *txn) context.Context { return context.WithValue(ctx, txnKey{}, t) }

func (s *Store) txnFrom(ctx context.Context) *txn {
	t, _ := ctx.Value(txnKey{}).(*txn)
	if t != nil && t.s == s && !t.done {
		return t
	}
	return nil
}

// begin opens a transaction holding the write lock until end.
func (s *Store) begin(tx Tx) *txn {
	s.mu.Lock()
	return &txn{s: s, tx: tx, at: s.stamp()}
}

// end commits (publishing change events) or rolls back, and releases the lock. The events are encoded and
// published after the lock is released, in commit order, before end returns.
func (t *txn) end(commit bool) {
	if commit {
		t.commit()
	} else {
		t.rollback()
	}
	t.done = true
	batch := t.batch
	t.batch = nil
	t.s.mu.Unlock()
	if batch != nil {
		t.s.publishBatch(batch)
	}
}

// Apply runs ops as one transaction (or inside the transaction ctx carries). With allOrNone a single
// failure rolls back every op; the failing ops keep their own errors and every other op reports
// ALL_OR_NONE_OPERATION_ROLLED_BACK.
func (s *Store) Apply(ctx context.Context, tx Tx, ops []Op, allOrNone bool) []Result {
	if t := s.txnFrom(ctx); t != nil {
		return t.applyAll(ops, allOrNone)
	}
	t := s.begin(tx)
	res := t.applyAll(ops, allOrNone)
	t.end(true)
	return res
}

func (t *txn) applyAll(ops []Op, allOrNone bool) []Result {
	undoMark, eventMark := len(t.undo), len(t.events)
	results := make([]Result, len(ops))
	failed := false
	for i := range ops {
		results[i] = t.apply(&ops[i])
		if !results[i].OK() {
			failed = true
		}
	}
	if failed && allOrNone {
		for i := len(t.undo) - 1; i >= undoMark; i-- {
			t.undo[i]()
		}
		t.undo, t.events = t.undo[:undoMark], t.events[:eventMark]
		for i := range results {
			if results[i].OK() {
				results[i] = Result{Errors: []APIError{{Code: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
					Message: "Record rolled back because not all records were valid and the request was using AllOrNone header", Fields: []string{}}}}
			}
		}
	}
	return results
}

func (t *txn) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo, t.events, t.overflowed = nil, nil, nil
}

func (t *txn) apply(op *Op) Result {
	tbl := t.s.tables[op.Object]
	switch op.Kind {
	case "insert":
		return t.insert(tbl, op.Fields, op.Order, nil)
	case "update":
		id, res := t.target(tbl, op.ID)
		if !res.OK() {
			return res
		}
		return t.update(tbl, tbl.get(id), op.Fields, op.Order)
	case "upsert":
		return t.upsert(tbl, op)
	case "delete", "hardDelete":
		return t.delete(tbl, op.ID, op.Kind == "hardDelete")
	case "undelete":
		return t.undelete(tbl, op.ID)
	}
	return Result{Errors: []APIError{{Code: "INVALID_OPERATION", Message: "unknown operation " + op.Kind}}}
}

func errResult(code, msg string, fields ...string) Result {
	if fields == nil {
		fields = []string{}
	}
	return Result{Errors: []APIError{{Code: code, Message: msg, Fields: fields}}}
}

// target resolves the id of an existing, live record of tbl's object.
func (t *txn) target(tbl *table, raw string) (string, Result) {
	id, ok := normalizeID(raw)
	if !ok || id[:3] != tbl.obj.KeyPrefix {
		return "", errResult("MALFORMED_ID", fmt.Sprintf("%s ID: id value of incorrect type: %s", tbl.obj.Label, raw), "Id")
	}
	r := tbl.get(id)
	if r == nil {
		res := errResult("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
		res.NotFound = true
		return "", res
	}
	if tbl.deleted(r) {
		res := errResult("ENTITY_IS_DELETED", "entity is deleted")
		res.NotFound = true
		return "", res
	}
	return id, Result{}
}

func (t *txn) upsert(tbl *table, op *Op) Result {
	f := op.ExtField
	if f.Name == "Id" {
		if op.ExtValue == "" {
			return t.insert(tbl, op.Fields, op.Order, nil)
		}
		id, res := t.target(tbl, op.ExtValue)
		if !res.OK() {
			return res
		}
		r := t.update(tbl, tbl.get(id), op.Fields, op.Order)
		return r
	}
	v, err := convertJSON(f, op.ExtValue)
	if err != nil || v == nil {
		return errResult("MALFORMED_QUERY", fmt.Sprintf("%s: invalid external id value: %s", f.Name, op.ExtValue), f.Name)
	}
	k, _ := keyOf(f, v)
	ids := tbl.keys[f][k]
	switch len(ids) {
	case 0:
		fields := op.Fields
		if _, has := lookupKey(fields, f.Name); !has {
			fields = make(map[string]any, len(op.Fields)+1)
			for name, val := range op.Fields {
				fields[name] = val
			}
			fields[f.Name] = op.ExtValue
		}
		return t.insert(tbl, fields, op.Order, nil)
	case 1:
		return t.update(tbl, tbl.get(ids[0]), op.Fields, op.Order)
	}
	res := errResult("MULTIPLE_CHOICES", fmt.Sprintf("More than one record found for external id field %s: %s", f.Name, op.ExtValue))
	res.Matches = append([]string(nil), ids...)
	return res
}

func lookupKey(m map[string]any, name string) (any, bool) {
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// orderedKeys returns the keys of fields in request order where known, else sorted for determinism.
func orderedKeys(fields map[string]any, order []string) []string {
	if len(order) == len(fields) {
		return order
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// setFields converts and checks the request's values and writes them into vals. changed collects the fields
// whose value differs from before.
func (t *txn) setFields(tbl *table, vals []any, fields map[string]any, order []string, creating bool, changed *[]*Field) *APIError {
	o := tbl.obj
	for _, name := range orderedKeys(fields, order) {
		raw := fields[name]
		if name == "attributes" {
			continue
		}
		f := o.Field(name)
		if f == nil {
			// A lookup set through the parent's external id: {"Account": {"Ext__c": "A-1"}} in JSON, an
			// Account.Ext__c column in Bulk CSV.
			lookup, id, e, ok := t.resolveExternalLookup(o, name, raw)
			if e != nil {
				return e
			}
			if ok {
				f, raw = lookup, id
			}
		}
		if f == nil {
			e := APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on sobject of type %s", name, o.Name), Fields: []string{}}
			return &e
		}
		if f.Name == "Id" {
			if creating {
				e := APIError{Code: "INVALID_FIELD_FOR_INSERT_UPDATE", Message: "Record ID: cannot specify Id in an insert call", Fields: []string{"Id"}}
				return &e
			}
			continue // the update's own key
		}
		if (creating && !f.Createable) || (!creating && !f.Updateable) {
			verb := "update"
			if creating {
				verb = "create"
			}
			e := APIError{Code: "INVALID_FIELD_FOR_INSERT_UPDATE", Message: fmt.Sprintf("Unable to %s fields: %s. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", verb, f.Name), Fields: []string{f.Name}}
			return &e
		}
		var v any
		var err error
		if c, ok := raw.(csvCell); ok {
			v, err = convertText(f, string(c))
		} else {
			v, err = convertJSON(f, raw)
		}
		if err != nil {
			if fe, ok := err.(*fieldError); ok {
				e := fe.api()
				return &e
			}
			code := "JSON_PARSER_ERROR"
			if _, ok := raw.(csvCell); ok {
				code = "INVALID_TYPE_ON_FIELD_IN_RECORD"
			}
			e := APIError{Code: code, Message: err.Error(), Fields: []string{f.Name}}
			return &e
		}
		if fe := t.check(f, v); fe != nil {
			e := fe.api()
			return &e
		}
		if !sameValue(vals[f.Index], v) {
			vals[f.Index] = v
			*changed = append(*changed, f)
		}
	}
	return nil
}

// resolveExternalLookup turns a relationship reference by external id into the parent's id. name is the
// key as the request spelled it: a relationship name whose value is an object {"ExtField__c": value} (JSON),
// or "Relationship.ExtField__c" with a CSV cell. ok is false when name is neither; otherwise either the
// lookup field and the parent's id (nil when the value is null) or the error are set.
func (t *txn) resolveExternalLookup(o *Object, name string, raw any) (lookup *Field, id any, e *APIError, ok bool) {
	rel, extName, dotted := strings.Cut(name, ".")
	var extRaw any
	var parentType string
	if dotted {
		if _, isCell := raw.(csvCell); !isCell && raw != nil {
			return nil, nil, nil, false
		}
		extRaw = raw
	} else {
		m, isObj := raw.(map[string]any)
		if !isObj {
			return nil, nil, nil, false
		}
		for k, v := range m {
			if k == "attributes" {
				if a, ok := v.(map[string]any); ok {
					parentType, _ = a["type"].(string)
				}
				continue
			}
			if extName != "" {
				err := APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("The foreign key reference %s must name one external id field", name), Fields: []string{}}
				return nil, nil, &err, true
			}
			extName, extRaw = k, v
		}
	}
	lookup = o.relByLower[strings.ToLower(rel)]
	if lookup == nil || len(lookup.ReferenceTo) == 0 || lookup.Index < 0 {
		return nil, nil, nil, false
	}
	target := lookup.ReferenceTo[0]
	if parentType != "" {
		target = parentType
	}
	parent := t.s.cat.Object(target)
	if parent == nil || !slices.Contains(lookup.ReferenceTo, parent.Name) {
		err := APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("Cannot reference %s through %s", target, lookup.RelationshipName), Fields: []string{}}
		return nil, nil, &err, true
	}
	ext := parent.Field(extName)
	if ext == nil || !(ext.ExternalID || ext.Unique) || t.s.tables[parent].keys[ext] == nil {
		err := APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("Field name provided, %s is not an External ID or indexed field for %s", extName, parent.Name), Fields: []string{}}
		return nil, nil, &err, true
	}
	if extRaw == nil {
		return lookup, nil, nil, true // clears the lookup
	}
	var v any
	var err error
	if c, isCell := extRaw.(csvCell); isCell {
		v, err = convertText(ext, string(c))
	} else {
		v, err = convertJSON(ext, extRaw)
	}
	shown := fmt.Sprint(extRaw)
	if err != nil || v == nil {
		e := APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("Foreign key external ID: %s not found for field %s in entity %s", shown, ext.Name, parent.Name), Fields: []string{}}
		return nil, nil, &e, true
	}
	k, _ := keyOf(ext, v)
	switch ids := t.s.tables[parent].keys[ext][k]; len(ids) {
	case 0:
		e := APIError{Code: "INVALID_FIELD", Message: fmt.Sprintf("Foreign key external ID: %s not found for field %s in entity %s", shown, ext.Name, parent.Name), Fields: []string{}}
		return nil, nil, &e, true
	case 1:
		return lookup, ids[0], nil, true
	default:
		e := APIError{Code: "DUPLICATE_EXTERNAL_ID", Message: fmt.Sprintf("%s: More than 1 record found for External ID field: %s", parent.Name, shown), Fields: []string{}}
		return nil, nil, &e, true
	}
}

func sameValue(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb)
	}
	return a == b
}

// check applies the per-field rules: length, picklist, email and references.
func (t *txn) check(f *Field, v any) *fieldError {
	if v == nil {
		return nil
	}
	s, isText := v.(string)
	if isText && f.Length > 0 && len([]rune(s)) > f.Length && f.Type != "reference" {
		shown := s
		if len(shown) > 255 {
			shown = shown[:255]
		}
		return &fieldError{"STRING_TOO_LONG", fmt.Sprintf("%s: data value too large: %s (max length=%d)", f.Label, shown, f.Length), f.Name}
	}
	switch f.Type {
	case "picklist":
		if f.Restricted && !slices.Contains(f.Picklist, s) {
			return &fieldError{"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", fmt.Sprintf("%s: bad value for restricted picklist field: %s", f.Label, s), f.Name}
		}
	case "multipicklist":
		if f.Restricted {
			for _, part := range strings.Split(s, ";") {
				if !slices.Contains(f.Picklist, part) {
					return &fieldError{"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", fmt.Sprintf("%s: bad value for restricted picklist field: %s", f.Label, part), f.Name}
				}
			}
		}
	case "email":
		if a, err := mail.ParseAddress(s); err != nil || a.Address != s {
			return &fieldError{"INVALID_EMAIL_ADDRESS", fmt.Sprintf("%s: invalid email address: %s", f.Label, s), f.Name}
		}
	case "reference":
		id, ok := normalizeID(s)
		if !ok {
			return &fieldError{"MALFORMED_ID", fmt.Sprintf("%s: id value of incorrect type: %s", f.Label, s), f.Name}
		}
		target := t.s.cat.ObjectForID(id)
		if target == nil || !slices.Contains(f.ReferenceTo, target.Name) {
			return &fieldError{"FIELD_INTEGRITY_EXCEPTION", fmt.Sprintf("%s: id value of incorrect type: %s", f.Label, s), f.Name}
		}
		r := t.s.tables[target].get(id)
		if r == nil {
			return &fieldError{"INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", f.Name}
		}
		if t.s.tables[target].deleted(r) {
			return &fieldError{"ENTITY_IS_DELETED", "entity is deleted", f.Name}
		}
	}
	return nil
}

// finish runs what follows the field values on every write: derived fields, required fields, validation
// rules and uniqueness.
func (t *txn) finish(tbl *table, vals []any, self string) *APIError {
	o := tbl.obj
	if o.derive != nil {
		o.derive(vals)
	}
	var missing []string
	for _, f := range o.Fields {
		if f.Required && f.Index >= 0 && vals[f.Index] == nil {
			missing = append(missing, f.Name)
		}
	}
	if len(missing) > 0 {
		return &APIError{Code: "REQUIRED_FIELD_MISSING", Message: "Required fields are missing: [" + strings.Join(missing, ", ") + "]", Fields: missing}
	}
	for i := range o.rules {
		r := &o.rules[i]
		if r.violated(vals[o.Field(r.Field).Index]) {
			return &APIError{Code: "FIELD_CUSTOM_VALIDATION_EXCEPTION", Message: r.Message, Fields: []string{r.Field}}
		}
	}
	for _, f := range o.Fields {
		if !f.Unique || f.Index < 0 {
			continue
		}
		k, ok := keyOf(f, vals[f.Index])
		if !ok {
			continue
		}
		for _, other := range tbl.keys[f][k] {
			if other != self {
				return &APIError{Code: "DUPLICATE_VALUE", Message: fmt.Sprintf("duplicate value found: %s duplicates value on record with id: %s", f.Name, other), Fields: []string{f.Name}}
			}
		}
	}
	return nil
}

func (t *txn) insert(tbl *table, fields map[string]any, order []string, forcedID *string) Result {
	o := tbl.obj
	vals := make([]any, o.stored)
	for _, f := range o.Fields {
		if f.Default != nil && f.Index >= 0 {
			vals[f.Index] = f.Default
		}
	}
	var changed []*Field
	if e := t.setFields(tbl, vals, fields, order, true, &changed); e != nil {
		return Result{Errors: []APIError{*e}}
	}
	if f := o.byName["OwnerId"]; f != nil && vals[f.Index] == nil {
		vals[f.Index] = t.tx.User
	}
	for _, f := range o.Fields {
		if f.AutoNumber {
			o.autoNo++
			vals[f.Index] = fmt.Sprintf("%08d", o.autoNo)
			t.pushUndo(func() { o.autoNo-- })
		}
	}
	if e := t.finish(tbl, vals, ""); e != nil {
		return Result{Errors: []APIError{*e}}
	}
	id := o.ids.next()
	if forcedID != nil {
		id = *forcedID
	}
	vals[0] = id
	t.setSystem(o, vals, true)
	r := &record{vals: vals}
	idx := len(tbl.rows)
	tbl.rows = append(tbl.rows, r)
	tbl.pos[id] = int32(idx)
	tbl.indexAdd(r)
	t.pushUndo(func() {
		tbl.indexRemove(r)
		delete(tbl.pos, id)
		tbl.rows[idx] = nil
		tbl.rows = tbl.rows[:idx]
	})
	if t.overflowed != nil {
		t.addEvent(pendingEvent{obj: o}) // only the entity matters once the transaction overflowed
	} else {
		t.addEvent(pendingEvent{obj: o, kind: "CREATE", ids: []string{id}, vals: vals})
	}
	return Result{ID: id, Created: true}
}

func (t *txn) setSystem(o *Object, vals []any, creating bool) {
	set := func(name string, v any) {
		if f := o.byName[name]; f != nil { // exact names: no case folding on the hot path
			vals[f.Index] = v
		}
	}
	if creating {
		set("CreatedDate", t.at)
		set("CreatedById", t.tx.User)
		set("IsDeleted", false)
	}
	set("LastModifiedDate", t.at)
	set("LastModifiedById", t.tx.User)
	set("SystemModstamp", t.at)
}

func (t *txn) update(tbl *table, old *record, fields map[string]any, order []string) Result {
	o := tbl.obj
	vals := slices.Clone(old.vals)
	var changed []*Field
	if e := t.setFields(tbl, vals, fields, order, false, &changed); e != nil {
		return Result{ID: old.id(), Errors: []APIError{*e}}
	}
	// Only an object that derives fields (Contact.Name from LastName) can
	// change more than was set; the copy to compare with is made only then.
	var before []any
	if o.derive != nil {
		before = slices.Clone(vals)
	}
	if e := t.finish(tbl, vals, old.id()); e != nil {
		return Result{ID: old.id(), Errors: []APIError{*e}}
	}
	// Derived fields that changed count as changed too.
	for _, f := range o.Fields {
		if before != nil && f.Calculated && f.Index >= 0 && len(f.compound) == 0 && !sameValue(before[f.Index], vals[f.Index]) && !slices.Contains(changed, f) {
			changed = append(changed, f)
		}
	}
	t.setSystem(o, vals, false)
	t.replace(tbl, old, &record{vals: vals})
	if len(changed) > 0 {
		changed = append(changed, o.byName["LastModifiedDate"])
		t.addEvent(pendingEvent{obj: o, kind: "UPDATE", ids: []string{old.id()}, vals: vals, only: changed, changed: changedNames(changed)})
	}
	return Result{ID: old.id()}
}

// replace swaps a record for its new version, keeping indexes and the undo log in step.
func (t *txn) replace(tbl *table, old, nw *record) {
	idx := tbl.pos[old.id()]
	tbl.indexRemove(old)
	tbl.rows[idx] = nw
	tbl.indexAdd(nw)
	t.pushUndo(func() {
		tbl.indexRemove(nw)
		tbl.rows[idx] = old
		tbl.indexAdd(old)
	})
}

func (t *txn) delete(tbl *table, raw string, hard bool) Result {
	o := tbl.obj
	if !o.Deletable {
		return errResult("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id")
	}
	id, ok := normalizeID(raw)
	if !ok || id[:3] != o.KeyPrefix {
		return errResult("MALFORMED_ID", fmt.Sprintf("%s ID: id value of incorrect type: %s", o.Label, raw), "Id")
	}
	old := tbl.get(id)
	if old == nil {
		res := errResult("ENTITY_IS_DELETED", "entity is deleted")
		res.NotFound = true
		return res
	}
	wasLive := !tbl.deleted(old)
	if !hard {
		if !wasLive {
			res := errResult("ENTITY_IS_DELETED", "entity is deleted")
			res.NotFound = true
			return res
		}
		vals := slices.Clone(old.vals)
		vals[tbl.del] = true
		vals[o.byName["SystemModstamp"].Index] = t.at
		t.replace(tbl, old, &record{vals: vals})
	} else {
		idx := tbl.pos[id]
		tbl.indexRemove(old)
		tbl.rows[idx] = nil
		delete(tbl.pos, id)
		t.pushUndo(func() {
			tbl.rows[idx] = old
			tbl.pos[id] = idx
			tbl.indexAdd(old)
		})
	}
	if wasLive {
		t.addEvent(pendingEvent{obj: o, kind: "DELETE", ids: []string{id}})
	}
	if hard {
		// Purged from the recycle bin, a record takes with it those its delete put there.
		t.setCascadedBy(id, "")
		if kids := t.s.cascaded[id]; len(kids) > 0 {
			delete(t.s.cascaded, id)
			t.pushUndo(func() { t.s.cascaded[id] = kids })
			for _, k := range kids {
				if r := k.tbl.get(k.id); r != nil && k.tbl.deleted(r) && t.s.cascadedBy[k.id] == id {
					t.delete(k.tbl, k.id, true)
				}
			}
		}
	}
	t.cascadeDelete(o, id, hard)
	return Result{ID: id}
}

// setCascadedBy records (or, with "", forgets) the parent whose delete deleted child, with its undo.
func (t *txn) setCascadedBy(child, parent string) {
	prev, had := t.s.cascadedBy[child]
	if !had && parent == "" {
		return
	}
	if parent == "" {
		delete(t.s.cascadedBy, child)
	} else {
		t.s.cascadedBy[child] = parent
	}
	t.pushUndo(func() {
		if had {
			t.s.cascadedBy[child] = prev
		} else {
			delete(t.s.cascadedBy, child)
		}
	})
}

// cascadeDelete deletes, as Salesforce does, the live records whose cascade-delete lookup names the
// deleted record id (an Account's Contacts and Opportunities), and theirs in turn.
func (t *txn) cascadeDelete(parent *Object, id string, hard bool) {
	for _, ch := range parent.children {
		child := t.s.cat.Object(ch.Object)
		if child == nil {
			continue
		}
		f := child.Field(ch.Field)
		if f == nil || !f.CascadeDelete {
			continue
		}
		ctbl := t.s.tables[child]
		// Copied: each delete below takes its record out of the index.
		ids := slices.Clone(ctbl.refs[f][id])
		for _, cid := range ids {
			t.delete(ctbl, cid, hard)
			if !hard {
				t.setCascadedBy(cid, id)
				t.s.cascaded[id] = append(t.s.cascaded[id], cascadedChild{ctbl, cid})
				pid := id
				t.pushUndo(func() { t.s.cascaded[pid] = t.s.cascaded[pid][:len(t.s.cascaded[pid])-1] })
			}
		}
	}
}

func (t *txn) undelete(tbl *table, raw string) Result {
	o := tbl.obj
	id, ok := normalizeID(raw)
	if !ok || id[:3] != o.KeyPrefix {
		return errResult("MALFORMED_ID", fmt.Sprintf("%s ID: id value of incorrect type: %s", o.Label, raw), "Id")
	}
	old := tbl.get(id)
	if old == nil {
		res := errResult("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
		res.NotFound = true
		return res
	}
	if !tbl.deleted(old) {
		return errResult("UNDELETE_FAILED", "Entity is not in the recycle bin")
	}
	vals := slices.Clone(old.vals)
	vals[tbl.del] = false
	if e := t.finish(tbl, vals, id); e != nil {
		return Result{ID: id, Errors: []APIError{*e}}
	}
	vals[o.Field("SystemModstamp").Index] = t.at
	t.replace(tbl, old, &record{vals: vals})
	t.addEvent(pendingEvent{obj: o, kind: "UNDELETE", ids: []string{id}, vals: vals})
	// Out of the recycle bin, it is no longer its parent's to restore.
	t.setCascadedBy(id, "")
	// The records deleted with it come back with it, as in Salesforce; not
	// one undeleted on its own since (and maybe deleted again on its own).
	if kids := t.s.cascaded[id]; len(kids) > 0 {
		delete(t.s.cascaded, id)
		t.pushUndo(func() { t.s.cascaded[id] = kids })
		for _, k := range kids {
			if r := k.tbl.get(k.id); r != nil && k.tbl.deleted(r) && t.s.cascadedBy[k.id] == id {
				t.undelete(k.tbl, k.id)
			}
		}
	}
	return Result{ID: id}
}

func changedNames(fs []*Field) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		if f.CompoundName != "" {
			out = append(out, f.CompoundName+"."+f.Component)
		} else {
			out = append(out, f.Name)
		}
	}
	return out
}

// eventBatch is one committed transaction's change events waiting to be encoded and published.
type eventBatch struct {
	ticket       uint64
	events       []pendingEvent
	tx           Tx
	key          string
	at           time.Time
	commitNumber int64
}

// commit closes the transaction's change events into a batch under one transaction key and takes the
// batch's publication ticket; end publishes it once the lock is released.
func (t *txn) commit() {
	t.undo = nil
	events := t.events
	t.events = nil
	// One GAP_OVERFLOW per entity tells subscribers to resynchronise the entity.
	for _, o := range t.overflowed {
		events = append(events, pendingEvent{obj: o, kind: "GAP_OVERFLOW", ids: []string{o.KeyPrefix + "000000000000000"}})
	}
	// Objects not selected for Change Data Capture publish nothing.
	events = slices.DeleteFunc(events, func(e pendingEvent) bool { return e.obj.NoCDC })
	if len(events) == 0 || t.s.publish == nil {
		return
	}
	t.s.commitNumber++
	t.s.txCounter++
	t.batch = &eventBatch{ticket: t.s.pubTicket, events: events, tx: t.tx, key: transactionKey(t.s.txCounter, t.at),
		at: t.at, commitNumber: t.s.commitNumber}
	t.s.pubTicket++
}

// publishBatch encodes a batch's events (concurrently with other transactions) and publishes them when
// every batch committed before it has been published. The turn passes on even if encoding panics, so one
// bad event cannot stall every later commit.
func (s *Store) publishBatch(b *eventBatch) {
	var raw []cometd.RawEvent
	// The payloads are built in a pooled buffer: the bus copies each into
	// its stored event, so the buffer goes back once they are published.
	bp := eventBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		s.pubMu.Lock()
		for s.pubNext != b.ticket {
			s.pubCond.Wait()
		}
		if raw != nil {
			s.publish(raw...)
		}
		s.pubNext++
		s.pubMu.Unlock()
		s.pubCond.Broadcast()
		*bp = buf[:0]
		eventBufs.Put(bp)
	}()
	out := make([]cometd.RawEvent, len(b.events))
	for i := range b.events {
		e := &b.events[i]
		start := len(buf)
		buf = appendEventPayload(buf, e, b, i+1)
		out[i] = cometd.RawEvent{Entity: e.obj.Name, Payload: buf[start:len(buf):len(buf)]}
		if i == 0 && len(b.events) > 1 {
			// The events of one batch are mostly alike: room for the rest
			// now, rather than growing (and copying) a buffer of a Bulk
			// job's 5,000 events a dozen times.
			buf = slices.Grow(buf, len(buf)*(len(b.events)-1)*5/4)
		}
	}
	raw = out
}

// eventBufs holds the buffers publishBatch builds a batch's payloads in.
var eventBufs = sync.Pool{New: func() any { return new([]byte) }}

// transactionKey formats a unique key in the UUID-like shape Salesforce uses.
func transactionKey(n uint64, at time.Time) string {
	ms := uint64(at.UnixMilli())
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(n>>16), uint16(n), uint16(ms>>32), uint16(ms>>16), ms&0xffffffffffff)
}

// parent returns the current record with the given canonical id from any table, for relationship paths of
// queries. A query that runs inside a transaction (ctx) reads without locking.
func (s *Store) parent(ctx context.Context, id string) (*Object, *record) {
	o := s.cat.ObjectForID(id)
	if o == nil {
		return nil, nil
	}
	if s.txnFrom(ctx) == nil {
		s.mu.RLock()
		defer s.mu.RUnlock()
	}
	return o, s.tables[o].get(id)
}

// Get returns the values of one record (nil if absent); deleted reports whether it is in the recycle bin.
func (s *Store) Get(ctx context.Context, o *Object, id string) (vals []any, deleted bool) {
	if s.txnFrom(ctx) == nil {
		s.mu.RLock()
		defer s.mu.RUnlock()
	}
	tbl := s.tables[o]
	r := tbl.get(id)
	if r == nil {
		return nil, false
	}
	return r.vals, tbl.deleted(r)
}

// Snapshot returns the records of o in insertion order: live ones, or all (recycle bin included). The
// records are immutable, so the caller may read them without a lock.
func (s *Store) Snapshot(ctx context.Context, o *Object, all bool) []*record {
	if s.txnFrom(ctx) == nil {
		s.mu.RLock()
		defer s.mu.RUnlock()
	}
	tbl := s.tables[o]
	out := make([]*record, 0, len(tbl.rows))
	for _, r := range tbl.rows {
		if r == nil || (!all && tbl.deleted(r)) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// Count returns the number of live records of o.
func (s *Store) Count(o *Object) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	tbl := s.tables[o]
	for _, r := range tbl.rows {
		if r != nil && !tbl.deleted(r) {
			n++
		}
	}
	return n
}
