package sim

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEventStringsDecodeToWhatEncodingJSONWouldWrite(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\r\x01\x1f", "<b>&amp;</b>",
		"héllo ☃ 𝄞", "bad \xff\xfe utf8", "line\u2028sep\u2029"} {
		var got string
		require.NoError(t, json.Unmarshal(appendJSONString(nil, s), &got), "%q", s)
		want, _ := json.Marshal(s)
		var round string
		require.NoError(t, json.Unmarshal(want, &round))
		require.Equal(t, round, got, "%q", s)
	}
	require.Equal(t, `"<a&b>"`, string(appendJSONString(nil, "<a&b>")), "no HTML escaping, as Salesforce sends it")
}
