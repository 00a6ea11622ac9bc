package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pgforce/pgforce/sim"
)

func init() {
	register(command{
		name:    "sim",
		summary: "run a simulated Salesforce org (OAuth, REST, Bulk 2.0, CDC) on loopback",
		run:     runSim,
	})
}

func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sim", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: pgforce sim [options]\n\nRuns a simulated Salesforce org on loopback: OAuth, REST and SOQL, Bulk API 2.0 and CometD\n"+
			"Change Data Capture, with Account, Contact, Opportunity, Lead, Case, User and the objects of\n"+
			"--schema. It keeps everything in memory and prints the credentials to point pgforce run (or\n"+
			"any client) at it. docs/sim.md describes the schema file (custom objects, fields, validation\n"+
			"rules) and the control API under /__sim/ (faults, edits as a UI user, API usage).\n\nOptions:\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:8642", "address to serve on (port 0 picks a free port)")
	clientID := fs.String("client-id", sim.DefaultClientID, "connected app client id (consumer key)")
	clientSecret := fs.String("client-secret", sim.DefaultClientSecret, "connected app client secret")
	username := fs.String("username", sim.DefaultUsername, "the org user's username")
	password := fs.String("password", sim.DefaultPassword, "the org user's password")
	schema := fs.String("schema", "", "JSON file declaring custom objects and fields (see docs/sim.md)")
	apiLimit := fs.Int("api-limit", sim.DefaultAPILimit, "daily API request allocation")
	tokenTTL := fs.Duration("token-ttl", sim.DefaultTokenTTL, "lifetime of an access token")
	jwtCert := fs.String("jwt-cert", "", "PEM certificate or public key that verifies JWT bearer assertions")
	retention := fs.Duration("event-retention", 72*time.Hour, "how long change events stay replayable")
	version := fs.String("api-version", sim.DefaultAPIVersion, "newest API version the org offers")
	bulkDelay := fs.Duration("bulk-process-delay", sim.DefaultBulkProcessDelay, "time a Bulk API 2.0 job spends in each of UploadComplete and InProgress (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := sim.Config{
		ClientID: *clientID, ClientSecret: *clientSecret, Username: *username, Password: *password,
		SchemaFile: *schema, APILimit: *apiLimit, TokenTTL: *tokenTTL, EventRetention: *retention,
		APIVersion: *version, BulkProcessDelay: *bulkDelay,
	}
	if *bulkDelay == 0 {
		cfg.BulkProcessDelay = -1 // Config's zero value means the default
	}
	if *jwtCert != "" {
		pem, err := os.ReadFile(*jwtCert)
		if err != nil {
			return fmt.Errorf("read --jwt-cert: %w", err)
		}
		cfg.JWTCertPEM = pem
	}
	srv, err := sim.Start(ctx, *listen, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	// The secret and password are printed on purpose: they are the simulator's own throwaway credentials,
	// which the user needs to point a client at it.
	fmt.Fprintf(stdout, "pgforce sim: Salesforce org simulator listening on %s\n", srv.URL())
	fmt.Fprintf(stdout, "  instance and login URL: %s\n", srv.URL())
	fmt.Fprintf(stdout, "  client id:     %s\n  client secret: %s\n  username:      %s\n  password:      %s\n",
		*clientID, *clientSecret, *username, *password)
	// Salesforce hands out refresh tokens through the web-server flow, which needs a browser; the simulator
	// prints one instead (the password grant issues none, as on the real platform).
	fmt.Fprintf(stdout, "  refresh token: %s\n", srv.IssueRefreshToken())
	fmt.Fprintf(stdout, "  org id: %s  user id: %s  API version: %s  daily API limit: %d\n",
		srv.OrgID(), srv.UserID(), *version, *apiLimit)
	<-ctx.Done()
	return nil
}
