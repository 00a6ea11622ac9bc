package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestHealthzAnswers503NamingTheFailingCheck(t *testing.T) {
	t.Parallel()
	s := New()
	s.AddCheck("database", func(context.Context) error { return nil })
	s.AddCheck("salesforce", func(context.Context) error { return errors.New("token refresh failed") })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	res, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	var body map[string]string
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	require.Equal(t, map[string]string{"database": "ok", "salesforce": "token refresh failed"}, body)

	s.AddCheck("salesforce", func(context.Context) error { return nil })
	res2, err := http.Get(srv.URL + "/healthz")
	require.NoError(t, err)
	res2.Body.Close()
	require.Equal(t, http.StatusOK, res2.StatusCode)
}

func TestMetricsExposesRegisteredCollectors(t *testing.T) {
	t.Parallel()
	s := New()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pgforce_test_records_total", Help: "test"})
	s.Registry.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Contains(t, string(b), "pgforce_test_records_total 3")
	require.True(t, strings.Contains(string(b), "go_goroutines"))
}

func TestServeStopsWhenContextIsCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New().Serve(ctx, "127.0.0.1:0", discardLogger()) }()
	cancel()
	require.NoError(t, <-done)
}
