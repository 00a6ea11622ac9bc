// Package pgcluster starts a throwaway Postgres server: initdb and postgres in
// a temporary directory, listening only on a unix socket there, ready for
// logical replication. Tests use it through internal/pgtest; `pgforce demo`
// uses it directly so that a newcomer needs no server of their own.
//
// When the calling process is root, the server runs as the unprivileged
// postgres (or nobody) user, because initdb and postgres refuse to run as
// root.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// InstallHint is repeated in every error about a missing server so that the
// person reading it knows the one command that fixes it.
const InstallHint = "install the Postgres 15 server: apt-get install postgresql-15"

// fallbackBindir is where Debian's postgresql-15 package puts the server
// binaries; pg_config (from libpq-dev or postgresql-server-dev) may be absent
// even when the server is installed.
const fallbackBindir = "/usr/lib/postgresql/15/bin"

// Options tunes a cluster started by Start.
type Options struct {
	// Settings are extra postgresql.conf settings; they override the
	// defaults (fsync=off, wal_level=logical, ...).
	Settings map[string]string
	// TempPrefix names the temporary directory (default "pgforce-pgcluster-").
	TempPrefix string
}

// Cluster is a running throwaway Postgres server listening only on a unix
// socket inside its own temporary directory.
type Cluster struct {
	dir      string
	sockDir  string
	port     int
	settings map[string]string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// DefaultSettings are the settings of a throwaway cluster: durable enough
// for tests and demos, fast, and ready for logical replication (the worker
// streams the outbox through a publication).
func DefaultSettings() map[string]string {
	return map[string]string{
		"listen_addresses":        "''",
		"fsync":                   "off",
		"synchronous_commit":      "on",
		"full_page_writes":        "off",
		"wal_level":               "logical",
		"max_replication_slots":   "16",
		"max_wal_senders":         "16",
		"shared_buffers":          "128MB",
		"max_connections":         "200",
		"log_min_messages":        "warning",
		"log_min_error_statement": "panic",
	}
}

// Bindir returns the directory holding initdb and postgres: `pg_config
// --bindir` when pg_config is installed, else Debian's default location.
func Bindir() (string, error) {
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	candidates = append(candidates, fallbackBindir)
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no initdb/postgres binaries found in %s: %s", strings.Join(candidates, " or "), InstallHint)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start initialises and starts a throwaway cluster. The caller must Stop it.
// The server also receives SIGQUIT when the calling process dies, so a
// crashed caller does not leave it running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bindir, err := Bindir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	prefix := opts.TempPrefix
	if prefix == "" {
		prefix = "pgforce-pgcluster-"
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	c := &Cluster{dir: dir, sockDir: dir, port: 5432, settings: DefaultSettings(), exited: make(chan struct{})}
	for k, v := range opts.Settings {
		c.settings[k] = v
	}
	if err := c.start(ctx, bindir, cred); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// serverCredential returns the unprivileged identity to run the server as
// when we are root (initdb and postgres refuse to run as root), or nil.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and neither the postgres nor the nobody user exists to run the server as: " + InstallHint)
}

func (c *Cluster) start(ctx context.Context, bindir string, cred *syscall.Credential) error {
	if cred != nil {
		if err := os.Chown(c.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", c.dir, err)
		}
	}
	data := filepath.Join(c.dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bindir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--nosync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = c.dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}

	keys := make([]string, 0, len(c.settings))
	for k := range c.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("\n# pgcluster settings\n")
	conf.WriteString("unix_socket_directories = '" + c.sockDir + "'\n")
	conf.WriteString("port = " + strconv.Itoa(c.port) + "\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = %s\n", k, c.settings[k])
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = f.WriteString(conf.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}

	logPath := c.LogPath()
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create server log: %w", err)
	}
	// The postmaster runs as our direct child (not through pg_ctl) so that
	// Pdeathsig can stop it if this process dies without cleaning up.
	c.cmd = exec.Command(filepath.Join(bindir, "postgres"), "-D", data)
	c.cmd.Stdout = logFile
	c.cmd.Stderr = logFile
	c.cmd.Dir = c.dir
	// Setpgid keeps a terminal's Ctrl-C away from the server: the caller
	// decides when and how it stops.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := c.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	go func() {
		_ = c.cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-c.exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited during startup:\n%s", log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres did not accept connections within 60s: %v\n%s", err, log)
		}
	}
}

// ConnString returns a connection string for database dbname as the
// superuser postgres over the cluster's unix socket.
func (c *Cluster) ConnString(dbname string) string {
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(c.port))
	q.Set("sslmode", "disable")
	return "postgres://postgres@/" + url.PathEscape(dbname) + "?" + q.Encode()
}

// Dir is the cluster's temporary directory, removed by Stop.
func (c *Cluster) Dir() string { return c.dir }

// SocketDir is the directory holding the server's unix socket (psql's host).
func (c *Cluster) SocketDir() string { return c.sockDir }

// Port is the port number in the socket's name (psql's port).
func (c *Cluster) Port() int { return c.port }

// LogPath is the server's log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.dir, "server.log") }

// Setting returns the value a setting was configured with.
func (c *Cluster) Setting(name string) string { return c.settings[name] }

// Stop shuts the server down (fast shutdown, then immediate after 30 s) and
// removes its directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	if c == nil {
		return nil
	}
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.exited:
			case <-time.After(30 * time.Second):
				_ = c.cmd.Process.Signal(syscall.SIGQUIT)
				<-c.exited
			}
		}
	}
	if c.dir == "" {
		return nil
	}
	err := os.RemoveAll(c.dir)
	c.dir = ""
	return err
}
