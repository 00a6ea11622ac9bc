package sim

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgforce/pgforce/sim/soql"
)

// groupRow is one group of an aggregate query as ORDER BY sees it: grouped fields come from any record
// of the group (they are equal across it), aggregates from the computed values.
type groupRow struct {
	rep  row
	aggs map[string]any
}

func (g groupRow) Value(field string) any {
	if v, ok := g.aggs[field]; ok {
		return v
	}
	return g.rep.Value(field)
}

func (g groupRow) Parent(referenceField string) soql.Row { return g.rep.Parent(referenceField) }

type aggGroup struct {
	rows []*record
	gr   groupRow
	out  []any // the JSON value of each aggregate, in q.Aggregates() order
}

// evalAggregate groups the matching rows by the GROUP BY paths, computes the aggregates, sorts, offsets
// and limits the groups, and renders them as AggregateResult records.
func (s *Server) evalAggregate(ctx context.Context, q *soql.Query, o *Object, rows []*record, now time.Time) []*orderedJSON {
	mk := func(r *record) row { return row{st: s.store, ctx: ctx, o: o, r: r} }
	groupPaths := q.GroupBy()
	var groups []*aggGroup
	index := map[string]*aggGroup{}
	for _, r := range rows {
		var key strings.Builder
		for _, p := range groupPaths {
			v := p.Resolve(mk(r))
			if str, ok := v.(string); ok {
				v = strings.ToLower(str) // text groups case-insensitively, as in Salesforce
			}
			b, _ := json.Marshal(v)
			key.Write(b)
			key.WriteByte(0)
		}
		g := index[key.String()]
		if g == nil {
			g = &aggGroup{}
			index[key.String()] = g
			groups = append(groups, g)
		}
		g.rows = append(g.rows, r)
	}
	// Without GROUP BY, an aggregate query answers one row even over no records.
	if len(groupPaths) == 0 && len(groups) == 0 {
		groups = append(groups, &aggGroup{})
	}
	aggs := q.Aggregates()
	for _, g := range groups {
		g.gr = groupRow{aggs: map[string]any{}}
		if len(g.rows) > 0 {
			g.gr.rep = mk(g.rows[0])
		}
		for i, a := range aggs {
			raw, out := s.aggregateValue(ctx, o, a, g.rows)
			g.gr.aggs[soql.AggregateKey(i)] = raw
			g.out = append(g.out, out)
		}
	}
	kept := groups[:0]
	for _, g := range groups {
		if q.MatchHaving(g.gr, now) {
			kept = append(kept, g)
		}
	}
	groups = kept
	if q.HasOrder() {
		sort.SliceStable(groups, func(i, j int) bool { return q.Less(groups[i].gr, groups[j].gr) })
	}
	if off := q.Offset(); off > 0 {
		if off >= len(groups) {
			groups = nil
		} else {
			groups = groups[off:]
		}
	}
	if n, ok := q.Limit(); ok && n < len(groups) {
		groups = groups[:n]
	}
	fields := q.Fields()
	keys := q.FieldKeys()
	out := make([]*orderedJSON, 0, len(groups))
	for _, g := range groups {
		rec := &orderedJSON{}
		rec.set("attributes", map[string]string{"type": "AggregateResult"})
		next := 0
		writeAggs := func(upTo int) {
			for ; next < len(aggs) && aggs[next].After >= 0 && aggs[next].After <= upTo; next++ {
				rec.set(aggs[next].Key, g.out[next])
			}
		}
		for i, p := range fields {
			writeAggs(i)
			rec.set(keys[i], s.pathJSON(ctx, o, p, g.rows))
		}
		writeAggs(len(fields))
		out = append(out, rec)
	}
	return out
}

// pathJSON renders the value of a grouped path for a group (nil for an empty group).
func (s *Server) pathJSON(ctx context.Context, o *Object, p soql.Path, rows []*record) any {
	if len(rows) == 0 {
		return nil
	}
	var at soql.Row = row{st: s.store, ctx: ctx, o: o, r: rows[0]}
	for _, rel := range p.Relationships {
		if at = at.Parent(rel); at == nil {
			return nil
		}
	}
	r := at.(row)
	return fieldJSON(r.o.byName[p.Field], r.r.vals)
}

// aggregateValue computes one aggregate over a group: the raw value ORDER BY compares and the JSON value.
func (s *Server) aggregateValue(ctx context.Context, o *Object, a soql.Aggregate, rows []*record) (any, any) {
	var vals []any
	for _, r := range rows {
		if v := a.Path.Resolve(row{st: s.store, ctx: ctx, o: o, r: r}); v != nil && v != "" {
			vals = append(vals, v)
		}
	}
	switch a.Func {
	case "COUNT":
		return json.Number(strconv.Itoa(len(vals))), len(vals)
	case "COUNT_DISTINCT":
		seen := map[string]bool{}
		for _, v := range vals {
			b, _ := json.Marshal(v)
			seen[strings.ToLower(string(b))] = true
		}
		return json.Number(strconv.Itoa(len(seen))), len(seen)
	case "SUM", "AVG":
		if len(vals) == 0 {
			return nil, nil
		}
		sum := 0.0
		for _, v := range vals {
			f, _ := strconv.ParseFloat(toNumberText(v), 64)
			sum += f
		}
		if a.Func == "AVG" {
			sum /= float64(len(vals))
		}
		return json.Number(strconv.FormatFloat(sum, 'g', -1, 64)), sum
	}
	// MIN, MAX
	if len(vals) == 0 {
		return nil, nil
	}
	best := vals[0]
	for _, v := range vals[1:] {
		c := soql.CompareValues(a.Path.FieldInfo.Type, v, best)
		if (a.Func == "MIN" && c < 0) || (a.Func == "MAX" && c > 0) {
			best = v
		}
	}
	f := s.cat.Object(pathObject(o, a.Path)).byName[a.Path.Field]
	return best, jsonValue(f, best)
}

// pathObject names the object that holds the last field of p.
func pathObject(o *Object, p soql.Path) string {
	if len(p.Objects) == 0 {
		return o.Name
	}
	return p.Objects[len(p.Objects)-1]
}

func toNumberText(v any) string {
	switch n := v.(type) {
	case json.Number:
		return string(n)
	case string:
		return n
	case int:
		return strconv.Itoa(n)
	case int64:
		return strconv.FormatInt(n, 10)
	case float64:
		return strconv.FormatFloat(n, 'g', -1, 64)
	}
	return ""
}
