package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	pgsql "github.com/pgforce/pgforce/sql"
)

// installEnv is the environment `pgforce install` reads.
type installEnv struct {
	DatabaseURL string `env:"DATABASE_URL"`
}

func init() {
	register(command{
		name:    "install",
		summary: "install or upgrade the pgforce SQL in DATABASE_URL (for Postgres without the extension)",
		run:     runInstall,
	})
}

func runInstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("install", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: DATABASE_URL=postgres://... pgforce install\n\n"+
			"Installs pgforce %s into the database, or upgrades an older install made by this\n"+
			"command. Running it again changes nothing. Where you can install extensions,\n"+
			"CREATE EXTENSION pgforce does the same.\n", pgsql.Version)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var env installEnv
	if err := envconfig.Process(ctx, &env); err != nil {
		return fmt.Errorf("read environment: %w", err)
	}
	if env.DatabaseURL == "" {
		return fmt.Errorf("%w: set DATABASE_URL to the database to install into, e.g. DATABASE_URL=postgres://user@host/db", errUsage)
	}
	conn, err := pgx.Connect(ctx, env.DatabaseURL)
	if err != nil {
		// pgx errors name host and user but never the password.
		return fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	from, to, err := pgsql.Install(ctx, conn)
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted; nothing was changed: %w", err)
	case err != nil:
		return err
	case from == "":
		fmt.Fprintf(stdout, "installed pgforce %s\n", to)
	case from == to:
		fmt.Fprintf(stdout, "pgforce %s is already installed\n", to)
	default:
		fmt.Fprintf(stdout, "upgraded %s → %s\n", from, to)
	}
	return nil
}
