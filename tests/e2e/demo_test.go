// Package e2e drives the built pgforce binary the way a newcomer does:
// `pgforce demo`, then the things it tells them to try.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Small sizes keep the test well under a minute; the load path is the same.
const (
	accounts      = 300
	contacts      = 900
	opportunities = 120
)

// demoOutput collects the demo's stdout line by line as it arrives.
type demoOutput struct {
	mu    sync.Mutex
	lines []string
}

func (o *demoOutput) add(l string) {
	o.mu.Lock()
	o.lines = append(o.lines, l)
	o.mu.Unlock()
}

func (o *demoOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// find returns the first submatch of re in the output so far, or "".
func (o *demoOutput) find(re *regexp.Regexp) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
	}
	return ""
}

// eventually polls cond every 50 ms until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last seen: %s)", what, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgforce")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pgforce")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/pgforce:\n%s", out)
	return bin
}

var (
	reLoaded   = regexp.MustCompile(`initial load complete`)
	rePsql     = regexp.MustCompile(`psql "([^"]+)"`)
	reSim      = regexp.MustCompile(`simulator on (http://\S+):`)
	reUpdate1  = regexp.MustCompile(`^\s*(UPDATE salesforce\.account SET phone = .*;)$`)
	rePatch    = regexp.MustCompile(`curl -s -X PATCH .* -d '(\{[^']*\})' '([^']+)'`)
	rePgDir    = regexp.MustCompile(`Postgres started in (\S+) `)
	reLogDir   = regexp.MustCompile(`log (\S+)/worker\.log`)
	reLoadLine = regexp.MustCompile(`load (\w+) +\[#+\] +([\d,]+) / ([\d,]+) +100% .* synced$`)
)

func TestDemoLoadsTheOrgSyncsAChangeEachWayAndCleansUpOnInterrupt(t *testing.T) {
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, bin, "demo",
		"--accounts", fmt.Sprint(accounts), "--contacts", fmt.Sprint(contacts), "--opportunities", fmt.Sprint(opportunities),
		"--sim-listen", "127.0.0.1:0", "--health-addr", "127.0.0.1:0", "--refresh", "200ms", "--for", "2m")
	// DATABASE_URL would point the demo at another server; this test wants
	// the throwaway cluster a newcomer gets.
	cmd.Env = withoutEnv(os.Environ(), "DATABASE_URL")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	out := &demoOutput{}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.add(sc.Text())
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-scanned
		exited <- cmd.Wait()
	}()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", out, stderr.String())
		}
	}()

	eventually(t, 45*time.Second, "the demo reaches its live view", func() (bool, string) {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("the demo exited before its live view: %v", err)
		default:
		}
		return out.find(reLoaded) != "", "no 'initial load complete' line yet"
	})

	connString := out.find(rePsql)
	simURL := out.find(reSim)
	require.NotEmpty(t, connString, "the demo prints a psql command")
	require.NotEmpty(t, simURL, "the demo prints the simulator's URL")
	db, err := pgx.Connect(ctx, connString)
	require.NoError(t, err, "connect with the printed psql connection string")
	defer db.Close(context.Background())

	t.Run("initial load completes for every mapping", func(t *testing.T) {
		want := map[string]int64{"Account": accounts, "Contact": contacts, "Opportunity": opportunities}
		rows, err := db.Query(ctx, `SELECT sobject, state, row_count FROM pgforce.status`)
		require.NoError(t, err)
		got := map[string]int64{}
		for rows.Next() {
			var sobject, state string
			var n int64
			require.NoError(t, rows.Scan(&sobject, &state, &n))
			require.Equal(t, "synced", state, "%s mapping state", sobject)
			got[sobject] = n
		}
		require.NoError(t, rows.Err())
		require.Equal(t, want, got)
		// The progress view ended with a full bar for each mapping.
		full := map[string]bool{}
		for _, l := range strings.Split(out.String(), "\n") {
			if m := reLoadLine.FindStringSubmatch(l); m != nil && m[2] == m[3] {
				full[m[1]] = true
			}
		}
		require.Equal(t, map[string]bool{"Account": true, "Contact": true, "Opportunity": true}, full)
		var linked int64
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM salesforce.contact c JOIN salesforce.account a ON a.sfid = c.accountid`).Scan(&linked))
		require.Equal(t, int64(contacts), linked, "every Contact is linked to a loaded Account")
	})

	token := simToken(t, simURL)

	t.Run("the printed UPDATE in Postgres reaches the simulator", func(t *testing.T) {
		var update string
		for _, l := range strings.Split(out.String(), "\n") {
			if m := reUpdate1.FindStringSubmatch(l); m != nil {
				update = m[1]
				break
			}
		}
		require.NotEmpty(t, update, "the demo prints an UPDATE to try")
		_, err := db.Exec(ctx, update)
		require.NoError(t, err)
		eventually(t, 10*time.Second, "the Account's new phone in the simulator", func() (bool, string) {
			rec := simGet(t, token, simURL+"/services/data/v62.0/sobjects/Account/External_Id__c/ACC-00001?fields=Phone,Rating")
			return rec["Phone"] == "+1 415 555 0199" && rec["Rating"] == "Hot", fmt.Sprint(rec)
		})
	})

	t.Run("the printed PATCH in the simulator reaches Postgres", func(t *testing.T) {
		m := rePatch.FindStringSubmatch(out.String())
		require.NotNil(t, m, "the demo prints a curl PATCH to try")
		body, target := m[1], m[2]
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, target, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		sfid := target[strings.LastIndex(target, "/")+1:]
		eventually(t, 10*time.Second, "the simulator's edit in salesforce.account", func() (bool, string) {
			var industry string
			var employees int
			err := db.QueryRow(ctx, `SELECT coalesce(industry, ''), coalesce(numberofemployees, 0) FROM salesforce.account WHERE sfid = $1`, sfid).Scan(&industry, &employees)
			if err != nil {
				return false, err.Error()
			}
			return industry == "Biotechnology" && employees == 4242, fmt.Sprintf("industry=%s employees=%d", industry, employees)
		})
	})

	t.Run("Ctrl-C stops everything and removes the temporary data", func(t *testing.T) {
		pgDir, logDir := out.find(rePgDir), out.find(reLogDir)
		require.NotEmpty(t, pgDir)
		require.NotEmpty(t, logDir)
		db.Close(ctx)
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		select {
		case err := <-exited:
			stopped = true
			require.NoError(t, err, "the demo exits 0 on Ctrl-C")
		case <-time.After(40 * time.Second):
			t.Fatal("the demo did not exit within 40s of SIGINT")
		}
		for _, dir := range []string{pgDir, logDir} {
			_, err := os.Stat(dir)
			require.True(t, os.IsNotExist(err), "%s is removed (stat: %v)", dir, err)
		}
		require.Contains(t, out.String(), "worker stopped (exit status 0)")
	})
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// simToken logs in to the simulator as the printed curl command does.
func simToken(t *testing.T, simURL string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "client_id": {"pgforce-sim"}, "client_secret": {"pgforce-sim-secret"},
		"username": {"sim@pgforce.dev"}, "password": {"pgforce"}}
	resp, err := http.PostForm(simURL+"/services/oauth2/token", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	require.NotEmpty(t, tok.AccessToken)
	return tok.AccessToken
}

func simGet(t *testing.T, token, u string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", u, b)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(b, &rec))
	return rec
}
