package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgforce/pgforce/internal/syncbuf"
)

func TestSimPrintsARefreshTokenTheTokenEndpointAccepts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- dispatch(ctx, []string{"sim", "--listen", "127.0.0.1:0"}, &out, io.Discard) }()
	defer func() {
		cancel()
		require.Equal(t, 0, <-done)
	}()
	re := regexp.MustCompile(`instance and login URL: (\S+)\n(?s:.*)refresh token: (\S+)\n`)
	var m []string
	require.Eventually(t, func() bool { m = re.FindStringSubmatch(out.String()); return m != nil }, 5*time.Second, 10*time.Millisecond)

	resp, err := http.PostForm(m[1]+"/services/oauth2/token", url.Values{"grant_type": {"refresh_token"},
		"client_id": {"pgforce-sim"}, "refresh_token": {m[2]}})
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var tok map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	require.NotEmpty(t, tok["access_token"])
}
