package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pgsql "github.com/pgforce/pgforce/sql"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersionPrintsTheSchemaVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "pgforce "+pgsql.Version+" (schema "+pgsql.Version), out)
}

func TestHelpListsEveryRegisteredCommand(t *testing.T) {
	code, out, _ := run(t, "help")
	require.Equal(t, 0, code)
	for name := range commands {
		require.Contains(t, out, "  "+name+" ")
	}
}

func TestUnknownCommandExitsWithUsage(t *testing.T) {
	code, _, errOut := run(t, "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
	require.Contains(t, errOut, "Commands:")
}

func TestNoArgumentsPrintsHelpAndFails(t *testing.T) {
	code, _, errOut := run(t)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Usage: pgforce <command>")
}

func TestBadFlagIsAUsageError(t *testing.T) {
	code, _, errOut := run(t, "version", "--bogus")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Run 'pgforce version -h'")
}

// The worker takes no flags: its help lists the settings it reads from the
// environment instead.
func TestRunHelpListsTheSettings(t *testing.T) {
	code, _, errOut := run(t, "run", "-h")
	require.Equal(t, 0, code)
	for _, name := range []string{"DATABASE_URL", "SALESFORCE_LOGIN_URL", "SALESFORCE_REFRESH_TOKEN", "PGFORCE_ORG", "PGFORCE_LOG_LEVEL"} {
		require.Contains(t, errOut, name)
	}
}

func TestHelpFlagsPrintTheCommandsLikeHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		code, out, errOut := run(t, arg)
		require.Equal(t, 0, code, arg)
		require.Contains(t, out, "Commands:", arg)
		require.NotContains(t, errOut, "unknown command", arg)
	}
}

// help <command> is the command's -h, not the list again.
func TestHelpOfACommandPrintsItsOptions(t *testing.T) {
	code, _, errOut := run(t, "help", "sim")
	require.Equal(t, 0, code)
	require.Contains(t, errOut, "Usage: pgforce sim [options]")
	require.Contains(t, errOut, "-listen")
	code, _, errOut = run(t, "help", "run")
	require.Equal(t, 0, code)
	require.Contains(t, errOut, "DATABASE_URL")
	code, _, errOut = run(t, "help", "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `no command "frobnicate"`)
}

func TestTheWorkersLogWritesDurationsAsPeopleReadThem(t *testing.T) {
	var out bytes.Buffer
	slog.New(logHandler(&out, slog.LevelInfo)).With("lease", 30*time.Second).Warn("backs off", "retry_in", 8*time.Second, "group", slog.GroupValue(slog.Duration("took", 1500*time.Millisecond)))
	require.Contains(t, out.String(), `"retry_in":"8s"`)
	require.Contains(t, out.String(), `"lease":"30s"`)
	require.Contains(t, out.String(), `"took":"1.5s"`)
}
