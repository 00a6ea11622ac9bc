package inbound

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWithStatusColumnAddsSyncedToEveryRecordAndNamesItInTheHeader(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"rows": {
			"\"Id\",\"Name\"\n\"1\",\"a\"\n\"2\",\"\"\n",
			"\"Id\",\"Name\",\"_hc_lastop\"\n\"1\",\"a\",\"SYNCED\"\n\"2\",\"\",\"SYNCED\"\n",
		},
		"crlf line endings stay": {
			"\"Id\"\r\n\"1\"\r\n",
			"\"Id\",\"_hc_lastop\"\r\n\"1\",\"SYNCED\"\r\n",
		},
		"newlines and doubled quotes inside values are not record ends": {
			"\"Id\",\"Text\"\n\"1\",\"line one\nline \"\"two\"\"\r\nthree\"\n\"2\",\"x\"\n",
			"\"Id\",\"Text\",\"_hc_lastop\"\n\"1\",\"line one\nline \"\"two\"\"\r\nthree\",\"SYNCED\"\n\"2\",\"x\",\"SYNCED\"\n",
		},
		"a last record without its newline": {
			"\"Id\"\n\"1\"\n\"2\"",
			"\"Id\",\"_hc_lastop\"\n\"1\",\"SYNCED\"\n\"2\",\"SYNCED\"",
		},
		"unquoted values": {
			"Id,Name\n1,a\n",
			"Id,Name,\"_hc_lastop\"\n1,a,\"SYNCED\"\n",
		},
		"header only": {"\"Id\"\n", "\"Id\",\"_hc_lastop\"\n"},
		"empty page":  {"", ""},
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.want, string(withStatusColumn([]byte(tc.in))))
		})
	}
}

// BenchmarkWithStatusColumn rewrites a page shaped like a Bulk result of
// the benchmark's Accounts: 10,000 records of 24 quoted values.
func BenchmarkWithStatusColumn(b *testing.B) {
	var page []byte
	for i := range 10_001 {
		for j := range 24 {
			if j > 0 {
				page = append(page, ',')
			}
			page = fmt.Appendf(page, `"value %d of record %d"`, j, i)
		}
		page = append(page, '\n')
	}
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		withStatusColumn(page)
	}
}
