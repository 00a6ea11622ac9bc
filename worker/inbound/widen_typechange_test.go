package inbound_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/sim"
)

// pgforce.retry of a value too long for its column describes the object
// again to widen the column. When that describe also finds a mapped field
// whose type Salesforce changed, the mapping must go to error with the fix,
// as the describe of an edited mapping does: the refusal of ensure_table
// was returned as a plain error, which tore the change-event stream down
// and was retried for ever, the same way, with the fix left out.
func TestARetryThatFindsAFieldWhoseTypeChangedPutsTheMappingInErrorWithTheFix(t *testing.T) {
	e := newEnv(t)
	ids := e.create("Gadget__c", map[string]any{"Name": "G", "Code__c": "short"})
	id := e.mapSynced("Gadget__c", []string{"Name", "Code__c", "Count__c"}, "cdc")
	require.NoError(t, e.sim.AlterField("Gadget__c", "Code__c", func(f *sim.Field) { f.Length = 40 }))
	long := "a code that is longer than ten"
	require.NoError(t, e.sim.UIEdit(context.Background(), "Gadget__c", ids[0], map[string]any{"Code__c": long}))
	errID, _ := e.waitOpenError(ids[0])

	require.NoError(t, e.sim.AlterField("Gadget__c", "Count__c", func(f *sim.Field) {
		f.Type, f.Length, f.Precision, f.Scale = "string", 20, 0, 0
	}))
	e.exec(`SELECT pgforce.retry($1)`, errID)
	e.eventually(15*time.Second, func() (bool, string) {
		st, detail := e.state(id)
		return st == "error" && strings.Contains(detail, "Count__c") && strings.Contains(detail, "array_remove"),
			fmt.Sprintf("state %s (%s)", st, detail)
	})
}
