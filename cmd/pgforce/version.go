package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	pgsql "github.com/pgforce/pgforce/sql"
)

// version is the release of the binary. Releases stamp it with
// -ldflags "-X main.version=..."; otherwise it is the schema version the
// binary installs, which is what users need to match against the database.
var version = pgsql.Version

func init() {
	register(command{
		name:    "version",
		summary: "print the pgforce version and the SQL schema version it installs",
		run: func(_ context.Context, args []string, stdout, stderr io.Writer) error {
			fs := newFlagSet("version", stderr)
			fs.Usage = func() {
				fmt.Fprint(stderr, "Usage: pgforce version\n\nPrints the binary's version and the SQL schema version it installs (pgforce install),\n"+
					"which is what to compare with the database's.\n")
			}
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "pgforce %s (schema %s, %s %s/%s)\n", version, pgsql.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	})
}
