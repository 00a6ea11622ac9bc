package sim

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/pgforce/pgforce/sim/cometd"
	"github.com/pgforce/pgforce/sim/soql"
)

// The Tooling API serves setup objects beside the data API. The simulator
// has one of them, PlatformEventChannelMember, because it is the only place
// a client can learn which objects are selected for Change Data Capture: a
// real org's global describe lists a change event entity for every object
// that supports CDC, selected or not.

// channelMember is the Tooling object PlatformEventChannelMember.
const channelMember = "PlatformEventChannelMember"

// standardChannel is the EventChannel of selections made on Setup's Change
// Data Capture page; their DeveloperName is ChangeEvents_<SelectedEntity>.
const standardChannel = "ChangeEvents"

var channelMemberFields = map[string]string{
	"id": "Id", "developername": "DeveloperName", "eventchannel": "EventChannel", "selectedentity": "SelectedEntity",
}

// toolingCatalog resolves the Tooling objects the simulator serves.
type toolingCatalog struct{}

func (toolingCatalog) ObjectName(name string) (string, bool) {
	if strings.EqualFold(name, channelMember) {
		return channelMember, true
	}
	return "", false
}

func (toolingCatalog) Field(object, field string) (soql.FieldInfo, bool) {
	name, ok := channelMemberFields[strings.ToLower(field)]
	if !ok || object != channelMember {
		return soql.FieldInfo{}, false
	}
	typ := "string"
	if name == "Id" {
		typ = "id"
	}
	return soql.FieldInfo{Name: name, Type: typ}, true
}

func (toolingCatalog) Relationship(string, string) (soql.FieldInfo, bool) {
	return soql.FieldInfo{}, false
}

// toolingRow is one PlatformEventChannelMember.
type toolingRow map[string]string

func (r toolingRow) Value(field string) any {
	if v, ok := r[field]; ok {
		return v
	}
	return nil
}

func (toolingRow) Parent(string) soql.Row { return nil }

// channelMembers lists the standard channel's members: one per object
// selected for Change Data Capture, in name order.
func (s *Server) channelMembers() []toolingRow {
	var rows []toolingRow
	for i, o := range s.cat.Objects() {
		if o.NoCDC {
			continue
		}
		entity := cometd.ChangeEventName(o.Name)
		rows = append(rows, toolingRow{
			"Id":             to18(fmt.Sprintf("0v8%012d", i+1)),
			"DeveloperName":  standardChannel + "_" + entity,
			"EventChannel":   standardChannel,
			"SelectedEntity": entity,
		})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i]["SelectedEntity"] < rows[j]["SelectedEntity"] })
	return rows
}

// tooling serves /services/data/vXX.X/tooling/query?q=: SOQL over the
// Tooling objects, answered in one page.
func (c *call) tooling() {
	if len(c.segs) != 2 || c.segs[1] != "query" {
		c.notFound()
		return
	}
	if c.r.Method != http.MethodGet {
		c.methodNotAllowed("GET,HEAD")
		return
	}
	text, ok := c.queryText()
	if !ok {
		return
	}
	q, err := soql.Parse(text)
	if err == nil {
		err = q.Bind(toolingCatalog{})
	}
	if err != nil {
		c.queryError(err)
		return
	}
	now := c.s.cfg.Clock().UTC()
	var matched []toolingRow
	for _, r := range c.s.channelMembers() {
		if !q.HasWhere() || q.Match(r, now) {
			matched = append(matched, r)
		}
	}
	if q.HasOrder() {
		sort.SliceStable(matched, func(i, j int) bool { return q.Less(matched[i], matched[j]) })
	}
	if off := q.Offset(); off > 0 {
		matched = matched[min(off, len(matched)):]
	}
	if n, ok := q.Limit(); ok && n < len(matched) {
		matched = matched[:n]
	}
	records := make([]*orderedJSON, 0, len(matched))
	if !q.IsCount() {
		for _, r := range matched {
			rec := &orderedJSON{}
			rec.set("attributes", map[string]string{"type": channelMember,
				"url": "/services/data/v" + c.version + "/tooling/sobjects/" + channelMember + "/" + r["Id"]})
			for _, p := range q.Fields() {
				rec.set(p.Field, r.Value(p.Field))
			}
			records = append(records, rec)
		}
	}
	out := &orderedJSON{}
	out.set("size", len(matched))
	out.set("totalSize", len(matched))
	out.set("done", true)
	out.set("queryLocator", nil)
	out.set("entityTypeName", channelMember)
	out.set("records", records)
	writeJSON(c.w, http.StatusOK, out)
}
