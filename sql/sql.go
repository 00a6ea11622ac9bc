// Package sql is pgforce's SQL control plane: the numbered .sql files in
// this directory, embedded in the binary, and the installer that applies
// them to a database.
//
// The same files are the single source of both install paths. The extension
// build (extension/Makefile) concatenates them into pgforce--<Version>.sql
// for CREATE EXTENSION; Install runs them directly on managed Postgres where
// custom extensions cannot be installed. Upgrade steps live in
// upgrade/<from>--<to>.sql and serve ALTER EXTENSION UPDATE and Install alike.
package sql

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Version is the version of the SQL in this package. It must equal
// default_version in extension/pgforce.control (a test checks this).
const Version = "0.1.0"

//go:embed *.sql upgrade
var files embed.FS

// Script returns the full install script of Version: the numbered files in
// order, as CREATE EXTENSION runs them.
func Script() string {
	s, err := script(files)
	if err != nil {
		// The files are embedded at build time; failing here is a build bug.
		panic(err)
	}
	return s
}

// Install applies pgforce to the database conn is connected to and reports
// the version found before (empty for a fresh install) and the version
// installed. Running it on an up-to-date database changes nothing; on an
// older install it runs the upgrade steps. Everything happens in one
// transaction under an advisory lock, so concurrent installers wait for each
// other and a failure leaves the database as it was.
func Install(ctx context.Context, conn *pgx.Conn) (from, to string, err error) {
	return install(ctx, conn, files, Version)
}

// installLockKey is the advisory lock that serialises installers.
const installLockKey = 0x70_67_66_6f_72_63_65 // "pgforce"

func install(ctx context.Context, conn *pgx.Conn, fsys fs.FS, version string) (from, to string, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", "", fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(installLockKey)); err != nil {
		return "", "", fmt.Errorf("take install lock: %w", err)
	}
	var extVersion string
	switch err := tx.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'pgforce'").Scan(&extVersion); {
	case err == nil:
		return "", "", fmt.Errorf("pgforce %s is installed as an extension in this database: upgrade it with ALTER EXTENSION pgforce UPDATE (after make install-extension), not with pgforce install", extVersion)
	case !errors.Is(err, pgx.ErrNoRows):
		return "", "", fmt.Errorf("look for the pgforce extension: %w", err)
	}

	from, err = installedVersion(ctx, tx)
	if err != nil {
		return "", "", err
	}
	switch {
	case from == "":
		s, err := script(fsys)
		if err != nil {
			return "", "", err
		}
		if _, err := tx.Exec(ctx, s); err != nil {
			return "", "", fmt.Errorf("install pgforce %s: %w", version, err)
		}
		if err := recordVersion(ctx, tx, version); err != nil {
			return "", "", err
		}
	case from == version:
		return from, version, nil
	case compareVersions(from, version) > 0:
		return from, version, fmt.Errorf("this database has pgforce %s, newer than this binary's %s: use a pgforce binary of version %s or later", from, version, from)
	default:
		steps, err := upgradePath(fsys, from, version)
		if err != nil {
			return from, version, err
		}
		for _, step := range steps {
			body, err := fs.ReadFile(fsys, step.file)
			if err != nil {
				return from, version, err
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return from, version, fmt.Errorf("upgrade pgforce %s to %s: %w", step.from, step.to, err)
			}
			if err := recordVersion(ctx, tx, step.to); err != nil {
				return from, version, err
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return from, version, fmt.Errorf("commit: %w", err)
	}
	return from, version, nil
}

// installedVersion returns the newest version recorded by a previous
// Install, or "" when pgforce is not installed.
func installedVersion(ctx context.Context, tx pgx.Tx) (string, error) {
	var hasTable, hasSchema bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('pgforce.schema_version') IS NOT NULL,
		EXISTS (SELECT FROM pg_namespace WHERE nspname = 'pgforce')`).Scan(&hasTable, &hasSchema); err != nil {
		return "", fmt.Errorf("look for an installed pgforce: %w", err)
	}
	if !hasTable {
		if hasSchema {
			return "", errors.New("schema pgforce exists but holds no pgforce.schema_version: it was not created by pgforce install; rename or drop it first")
		}
		return "", nil
	}
	rows, err := tx.Query(ctx, "SELECT version FROM pgforce.schema_version")
	if err != nil {
		return "", fmt.Errorf("read pgforce.schema_version: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("read pgforce.schema_version: %w", err)
	}
	if len(versions) == 0 {
		return "", errors.New("pgforce.schema_version is empty: the install is incomplete; drop schema pgforce and install again")
	}
	sort.Slice(versions, func(i, j int) bool { return compareVersions(versions[i], versions[j]) < 0 })
	return versions[len(versions)-1], nil
}

func recordVersion(ctx context.Context, tx pgx.Tx, version string) error {
	if _, err := tx.Exec(ctx, "INSERT INTO pgforce.schema_version (version) VALUES ($1)", version); err != nil {
		return fmt.Errorf("record version %s: %w", version, err)
	}
	return nil
}

// baseFile matches the numbered install files, e.g. 010_schema.sql.
var baseFile = regexp.MustCompile(`^[0-9]{3}_[a-z0-9_]+\.sql$`)

// script concatenates the numbered files of fsys in name order.
func script(fsys fs.FS) (string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || !baseFile.MatchString(e.Name()) {
			continue
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "-- %s\n%s\n", e.Name(), body)
	}
	if b.Len() == 0 {
		return "", errors.New("no install files found")
	}
	return b.String(), nil
}

type upgradeStep struct{ from, to, file string }

var stepFile = regexp.MustCompile(`^([0-9]+\.[0-9]+\.[0-9]+)--([0-9]+\.[0-9]+\.[0-9]+)\.sql$`)

// upgradePath returns the shortest chain of upgrade steps from one version
// to another, like ALTER EXTENSION UPDATE picks its scripts.
func upgradePath(fsys fs.FS, from, to string) ([]upgradeStep, error) {
	entries, err := fs.ReadDir(fsys, "upgrade")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	next := map[string][]upgradeStep{}
	for _, e := range entries {
		m := stepFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		next[m[1]] = append(next[m[1]], upgradeStep{from: m[1], to: m[2], file: path.Join("upgrade", e.Name())})
	}
	// Breadth-first search over versions.
	prev := map[string]upgradeStep{}
	queue := []string{from}
	seen := map[string]bool{from: true}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if v == to {
			var steps []upgradeStep
			for v != from {
				s := prev[v]
				steps = append([]upgradeStep{s}, steps...)
				v = s.from
			}
			return steps, nil
		}
		for _, s := range next[v] {
			if !seen[s.to] {
				seen[s.to] = true
				prev[s.to] = s
				queue = append(queue, s.to)
			}
		}
	}
	return nil, fmt.Errorf("no upgrade path from pgforce %s to %s in sql/upgrade: this binary cannot upgrade that database; upgrade through an intermediate release", from, to)
}

// compareVersions compares dotted numeric versions like 0.10.2.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
