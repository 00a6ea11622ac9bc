package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	pgforcesql "github.com/pgforce/pgforce/sql"
)

// EnvDatabaseURL names the variable that points the tests at an existing
// server instead of a throwaway cluster.
const EnvDatabaseURL = "PGFORCE_TEST_DATABASE_URL"

// server is the process-wide state set up by Main.
var server struct {
	mainCalled bool
	err        error    // why the server is unusable; reported by every NewDB
	cluster    *Cluster // nil when EnvDatabaseURL is used
	baseURL    string   // connection string of the maintenance database
	prefix     string   // unique per process, so that test binaries sharing one server never collide

	templateOnce sync.Once
	template     string
	templateErr  error
	seq          atomic.Int64
}

// Main starts the test server, runs the tests and stops the server. Call it
// from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// If the server cannot start, the tests still run and every NewDB call fails
// with the reason, so `go test` reports a failure that says what to install.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	server.mainCalled = true
	var b [4]byte
	_, _ = rand.Read(b[:])
	server.prefix = fmt.Sprintf("pgt_%d_%s", os.Getpid(), hex.EncodeToString(b[:]))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		server.baseURL = u
	} else {
		server.cluster, server.err = Start(ctx, Options{})
		if server.err == nil {
			server.baseURL = server.cluster.ConnString("postgres")
		}
	}
	cancel()

	defer func() {
		// Databases of the shared server are dropped even when tests failed;
		// the throwaway cluster simply goes away with its directory.
		if server.cluster == nil && server.template != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if conn, err := pgx.Connect(ctx, server.baseURL); err == nil {
				_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{server.template}.Sanitize()+" WITH (FORCE)")
				conn.Close(ctx)
			}
		}
		if err := server.cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop cluster: %v\n", err)
		}
	}()
	return m.Run()
}

// DB is one isolated test database.
type DB struct {
	Name       string
	ConnString string
	// Conn is open on the database and closed at test cleanup.
	Conn *pgx.Conn
}

// Connect opens another connection to the database, closed at test cleanup.
func (db *DB) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.ConnString)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", db.Name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Pool opens a connection pool on the database, closed at test cleanup.
func (db *DB) Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, db.ConnString)
	if err != nil {
		t.Fatalf("pgtest: open pool on %s: %v", db.Name, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("pgtest: ping %s: %v", db.Name, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewDB returns a fresh database with pgforce installed (through the same
// installer as `pgforce install`), dropped at test cleanup.
func NewDB(t testing.TB) *DB {
	t.Helper()
	requireServer(t)
	server.templateOnce.Do(func() { server.template, server.templateErr = createTemplate() })
	if server.templateErr != nil {
		t.Fatalf("pgtest: prepare template database: %v", server.templateErr)
	}
	return newDB(t, server.template)
}

// UsingExternalServer reports whether the tests run against the server
// named by PGFORCE_TEST_DATABASE_URL rather than a throwaway cluster.
func UsingExternalServer() bool { return server.cluster == nil && server.baseURL != "" }

// NewEmptyDB returns a fresh database without pgforce, dropped at cleanup.
func NewEmptyDB(t testing.TB) *DB {
	t.Helper()
	requireServer(t)
	return newDB(t, "template0")
}

// AdminConnString returns a connection string to the server's maintenance
// database, for tests that create databases of their own.
func AdminConnString(t testing.TB) string {
	t.Helper()
	requireServer(t)
	return server.baseURL
}

// UniqueName returns a database name no other test (in any test binary
// sharing the server) uses.
func UniqueName(t testing.TB) string {
	name := strings.ToLower(nonIdent.ReplaceAllString(t.Name(), "_"))
	if len(name) > 30 {
		name = name[:30]
	}
	return fmt.Sprintf("%s_%d_%s", server.prefix, server.seq.Add(1), name)
}

var nonIdent = regexp.MustCompile(`[^A-Za-z0-9_]+`)

func requireServer(t testing.TB) {
	t.Helper()
	if !server.mainCalled {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain in this package")
	}
	if server.err != nil {
		t.Fatalf("pgtest: no Postgres server for the tests: %v", server.err)
	}
}

func newDB(t testing.TB, template string) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := UniqueName(t)
	admin, err := pgx.Connect(ctx, server.baseURL)
	if err != nil {
		t.Fatalf("pgtest: connect to server: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{template}.Sanitize())); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	db := &DB{Name: name, ConnString: withDatabase(server.baseURL, name)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pgx.Connect(ctx, server.baseURL)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		// A worker the test stopped may leave its walsender exiting for a
		// moment, and Postgres refuses to drop a database whose logical
		// slot is still active (55006): look again until it is not.
		for {
			_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			var pgErr *pgconn.PgError
			if err != nil && errors.As(err, &pgErr) && pgErr.Code == "55006" && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Errorf("pgtest: drop database %s: %v", name, err)
			}
			return
		}
	})
	db.Conn = db.Connect(t)
	return db
}

// createTemplate creates a database with pgforce installed, to clone from.
func createTemplate() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := server.prefix + "_template"
	admin, err := pgx.Connect(ctx, server.baseURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, withDatabase(server.baseURL, name))
	if err != nil {
		return name, err
	}
	// Cloning needs the template to have no connections, so close it now.
	defer conn.Close(ctx)
	if _, _, err := pgforcesql.Install(ctx, conn); err != nil {
		return name, fmt.Errorf("install pgforce: %w", err)
	}
	return name, nil
}

// withDatabase returns connString pointing at database dbname. It accepts
// URLs, which is what both Cluster.ConnString and the usual
// PGFORCE_TEST_DATABASE_URL look like.
func withDatabase(connString, dbname string) string {
	u, err := url.Parse(connString)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// keyword=value form: a later dbname overrides an earlier one.
		return connString + " dbname=" + quoteKV(dbname)
	}
	u.Path = "/" + dbname
	u.RawPath = ""
	return u.String()
}

func quoteKV(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
