// Package demo runs pgforce end to end on one machine: a throwaway Postgres
// (or the server in DATABASE_URL), a seeded simulated org, `pgforce install`,
// the worker, and the mappings a user would create. It shows the initial
// load and then a live view of pgforce.status, and prints what to try.
// `pgforce demo` and `make demo` are this package.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgforce/pgforce/internal/pgcluster"
	"github.com/pgforce/pgforce/sim"
	pgsql "github.com/pgforce/pgforce/sql"
	"github.com/pgforce/pgforce/worker/salesforce"
)

// Config is what `pgforce demo` takes from its flags and environment.
type Config struct {
	Sizes
	// SimListen is the simulator's address ("127.0.0.1:0" picks a port).
	SimListen string
	// HealthAddr is the worker's /healthz and /metrics address.
	HealthAddr string
	// DatabaseURL, when set, is a server to use instead of a throwaway
	// cluster; the demo creates its own database there and drops it on exit.
	DatabaseURL string
	// WorkerExe is the pgforce binary the worker runs from (`<exe> run`).
	// A separate process keeps the worker's memory measurable on its own.
	WorkerExe string
	// Out receives everything the demo shows.
	Out io.Writer
	// Redraw redraws the progress bars and status in place (a terminal);
	// otherwise they are printed as plain lines.
	Redraw bool
	// For ends the demo after the live view has run this long (0: until
	// ctx ends, i.e. Ctrl-C).
	For time.Duration
	// Refresh is how often the views are redrawn (default 500 ms).
	Refresh time.Duration

	// Only runs one part of the demo, for setups where the parts are
	// separate services (docker/compose.yaml):
	//   - OnlySim serves the seeded demo org on SimListen until ctx ends;
	//   - OnlyMappings creates the mappings in DatabaseURL (pgforce
	//     installed, a worker running) against the org at Org, then shows
	//     the load, the instructions and the live status.
	Only string
	// SimURL is the URL clients reach the simulator at, when that is not
	// its listen address (a container listening on 0.0.0.0).
	SimURL string
	// Org is the simulated org's login (OnlyMappings).
	Org Login
	// PublicSimURL and PsqlCommand replace the simulator URL and the psql
	// command in the printed instructions, for when the user reaches them
	// differently than the demo does (from the host into containers).
	PublicSimURL string
	PsqlCommand  string
}

// Parts of the demo that Config.Only selects.
const (
	OnlySim      = "sim"
	OnlyMappings = "mappings"
)

// Login is how the demo reaches a simulated org.
type Login struct {
	URL, ClientID, ClientSecret, Username, Password string
}

// Mapping SQL exactly as the demo runs it and prints it. inbound is 'cdc'
// rather than the default 'auto' because the simulator's global describe
// does not list the *ChangeEvent entities that 'auto' looks for, so 'auto'
// would fall back to polling once a minute.
func mappingSQL() []string {
	return []string{
		`INSERT INTO pgforce.mapping (sobject, fields, mode, upsert_field, inbound)
VALUES ('Account',
        '{Name,External_Id__c,Type,Industry,AnnualRevenue,NumberOfEmployees,Phone,Website,BillingCity,BillingState,BillingCountry,Rating}',
        'read_write', 'External_Id__c', 'cdc');`,
		`INSERT INTO pgforce.mapping (sobject, fields, mode, inbound)
VALUES ('Contact',
        '{AccountId,FirstName,LastName,Email,Phone,Title,Department,MailingCity,MailingCountry}',
        'read_write', 'cdc');`,
		`INSERT INTO pgforce.mapping (sobject, fields, mode, inbound)
VALUES ('Opportunity',
        '{AccountId,Name,StageName,Amount,Probability,CloseDate,LeadSource}',
        'read_only', 'cdc');`,
	}
}

// mappedObjects are the objects of mappingSQL, in order.
var mappedObjects = []string{"Account", "Contact", "Opportunity"}

// demoDB is the database the demo creates on its server.
const demoDB = "pgforce_demo"

// Run runs the demo until ctx ends (or cfg.For has passed in the live
// view), then stops everything it started and removes its temporary data.
// A cancelled ctx is the normal way to stop, so it is not an error.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 500 * time.Millisecond
	}
	d := &run{cfg: cfg, out: cfg.Out, start: time.Now()}
	defer func() {
		if cerr := d.cleanup(); cerr != nil && err == nil {
			err = cerr
		}
		if err != nil && ctx.Err() != nil {
			// Interrupted mid-way: what failed is the interruption itself.
			err = nil
		}
	}()
	return d.run(ctx)
}

type run struct {
	cfg   Config
	out   io.Writer
	start time.Time

	workDir   string // worker log; removed on exit
	cluster   *pgcluster.Cluster
	adminURL  string // maintenance database of a DATABASE_URL server
	dbURL     string // the demo database
	psqlConn  string // what to pass to psql
	srv       *sim.Server
	simURL    string // the org's URL as the demo and the worker reach it
	sf        *salesforce.Client
	org       *Org
	worker    *exec.Cmd
	workerLog string
	workerEnd chan struct{}
	cleanups  []func() error
}

func (d *run) logf(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] "+format+"\n", append([]any{time.Since(d.start).Seconds()}, args...)...)
}

func (d *run) onCleanup(f func() error) { d.cleanups = append(d.cleanups, f) }

// cleanup undoes the start-up steps in reverse order.
func (d *run) cleanup() error {
	var errs []error
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		if err := d.cleanups[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *run) run(ctx context.Context) error {
	switch d.cfg.Only {
	case OnlySim:
		return d.runSim(ctx)
	case OnlyMappings:
		return d.runMappings(ctx)
	case "":
	default:
		return fmt.Errorf("unknown demo part %q (want %q or %q)", d.cfg.Only, OnlySim, OnlyMappings)
	}
	where := "a throwaway Postgres"
	if d.cfg.DatabaseURL != "" {
		where = "a throwaway database on DATABASE_URL's server"
	}
	fmt.Fprintf(d.out, "pgforce demo: %s, a simulated Salesforce org, and the worker keeping them in sync.\n", where)
	var err error
	d.workDir, err = os.MkdirTemp("", "pgforce-demo-")
	if err != nil {
		return err
	}
	d.onCleanup(func() error { return os.RemoveAll(d.workDir) })

	if err := d.startPostgres(ctx); err != nil {
		return err
	}
	if err := d.startSim(ctx); err != nil {
		return err
	}
	if err := d.install(ctx); err != nil {
		return err
	}
	if err := d.startWorker(ctx); err != nil {
		return err
	}
	return d.mapAndWatch(ctx)
}

// runSim serves the seeded demo org until ctx ends. The org is seeded
// behind a private loopback port and only then served on SimListen, so a
// client that reaches it (another container) never sees it half-seeded.
func (d *run) runSim(ctx context.Context) error {
	public := d.cfg.SimListen
	d.cfg.SimListen = "127.0.0.1:0"
	if d.cfg.SimURL == "" {
		d.cfg.SimURL = "http://" + public
	}
	if err := d.startSim(ctx); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", public)
	if err != nil {
		return fmt.Errorf("serve the demo org on %s: %w", public, err)
	}
	hs := &http.Server{Handler: d.srv.Handler(), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	d.cfg.SimListen = public
	fmt.Fprintf(d.out, "serving the demo org on %s until interrupted (login %s / %s, client id %s, secret %s)\n",
		d.cfg.SimListen, sim.DefaultUsername, sim.DefaultPassword, sim.DefaultClientID, sim.DefaultClientSecret)
	<-ctx.Done()
	return nil
}

// runMappings is the demo against a database and an org that run
// elsewhere: it reads what it needs to know from the org, then creates the
// mappings and watches them.
func (d *run) runMappings(ctx context.Context) error {
	if d.cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL: set it to the database the worker syncs")
	}
	d.dbURL, d.psqlConn = d.cfg.DatabaseURL, d.cfg.DatabaseURL
	var err error
	d.sf, err = salesforce.New(ctx, salesforce.Config{
		LoginURL: d.cfg.Org.URL, ClientID: d.cfg.Org.ClientID, ClientSecret: d.cfg.Org.ClientSecret,
		Username: d.cfg.Org.Username, Password: d.cfg.Org.Password, CallOptionsClient: "pgforce-demo",
	})
	if err != nil {
		return fmt.Errorf("log in to the org at %s: %w", d.cfg.Org.URL, err)
	}
	d.simURL = d.cfg.Org.URL
	d.org = &Org{}
	if err := d.readOrg(ctx); err != nil {
		return err
	}
	d.logf("the org at %s has %s Accounts, %s Contacts and %s Opportunities", d.cfg.Org.URL,
		thousands(int64(d.org.Counts["Account"])), thousands(int64(d.org.Counts["Contact"])), thousands(int64(d.org.Counts["Opportunity"])))
	return d.mapAndWatch(ctx)
}

// mapAndWatch creates the mappings, shows the load, prints what to try and
// runs the live view.
func (d *run) mapAndWatch(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return fmt.Errorf("connect to the demo database: %w", err)
	}
	defer conn.Close(context.Background())

	fmt.Fprintln(d.out, "\nCreating the mappings, as you would in psql:")
	for i, q := range mappingSQL() {
		fmt.Fprintln(d.out)
		fmt.Fprintln(d.out, indent(q, "  "))
		// A restarted demo service finds its mappings already there.
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pgforce.mapping WHERE org = 'default' AND lower(sobject) = lower($1))`,
			mappedObjects[i]).Scan(&exists); err != nil {
			return fmt.Errorf("look for the %s mapping: %w", mappedObjects[i], err)
		}
		if exists {
			fmt.Fprintf(d.out, "  -- the %s mapping exists already; left as it is\n", mappedObjects[i])
			continue
		}
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("create mapping: %w", err)
		}
	}
	fmt.Fprintln(d.out)

	v := newView(d, conn)
	loaded, err := v.load(ctx)
	if err != nil {
		return err
	}
	d.logf("initial load complete: %s rows in %.1fs; live view after %.1fs", thousands(int64(loaded.rows)), loaded.took.Seconds(), time.Since(d.start).Seconds())
	fmt.Fprintln(d.out)
	fmt.Fprint(d.out, d.instructions())
	return v.live(ctx)
}

// startPostgres starts the throwaway cluster, or creates the demo database
// on the DATABASE_URL server.
func (d *run) startPostgres(ctx context.Context) error {
	if d.cfg.DatabaseURL == "" {
		c, err := pgcluster.Start(ctx, pgcluster.Options{TempPrefix: "pgforce-demo-pg-"})
		if err != nil {
			return fmt.Errorf("start a throwaway Postgres (or set DATABASE_URL to a server the demo may create a database on): %w", err)
		}
		dir := c.Dir()
		d.onCleanup(func() error {
			if err := c.Stop(); err != nil {
				return fmt.Errorf("remove %s: %w", dir, err)
			}
			fmt.Fprintf(d.out, "stopped Postgres and removed %s\n", dir)
			return nil
		})
		d.cluster = c
		d.adminURL = c.ConnString("postgres")
		if err := createDB(ctx, d.adminURL, demoDB); err != nil {
			return err
		}
		d.dbURL = c.ConnString(demoDB)
		d.psqlConn = fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", c.SocketDir(), c.Port(), demoDB)
		d.logf("Postgres started in %s (unix socket only, wal_level=logical)", dir)
		return nil
	}
	cc, err := pgx.ParseConfig(d.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	name := fmt.Sprintf("%s_%d", demoDB, os.Getpid())
	d.adminURL = d.cfg.DatabaseURL
	if err := createDB(ctx, d.adminURL, name); err != nil {
		return fmt.Errorf("DATABASE_URL: the demo creates a database of its own there: %w", err)
	}
	d.onCleanup(func() error { return dropDB(d.adminURL, name) })
	d.dbURL = withDatabase(d.cfg.DatabaseURL, name)
	d.psqlConn = d.dbURL
	d.logf("using the server in DATABASE_URL (%s:%d), database %s (dropped on exit)", cc.Host, cc.Port, name)
	return nil
}

func createDB(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// dropDB drops the demo database on a server that outlives the demo. The
// worker's logical replication slot lives in it and blocks DROP DATABASE,
// so it goes first (the worker has stopped, so the slot is inactive).
func dropDB(adminURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, name); err != nil {
		return fmt.Errorf("drop the replication slots of %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// withDatabase points a URL or keyword=value connection string at dbname.
func withDatabase(connString, dbname string) string {
	u, err := url.Parse(connString)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return connString + " dbname=" + dbname
	}
	u.Path = "/" + dbname
	u.RawPath = ""
	return u.String()
}

func (d *run) startSim(ctx context.Context) error {
	srv, err := sim.Start(ctx, d.cfg.SimListen, sim.Config{Schema: Schema()})
	if err != nil {
		return fmt.Errorf("start the simulator on %s (use --sim-listen to pick another address): %w", d.cfg.SimListen, err)
	}
	d.onCleanup(srv.Close)
	d.srv = srv
	d.sf, err = salesforce.New(ctx, salesforce.Config{
		LoginURL: srv.URL(), ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		Username: sim.DefaultUsername, Password: sim.DefaultPassword, CallOptionsClient: "pgforce-demo",
	})
	if err != nil {
		return fmt.Errorf("log in to the simulator: %w", err)
	}
	d.org, err = seed(ctx, srv, d.cfg.Sizes, d.accountIDs)
	if err != nil {
		return err
	}
	if err := d.readOrg(ctx); err != nil {
		return err
	}
	// Only now, after the demo's own calls on the listen address: tokens
	// issued from here on name this URL as the instance.
	if d.cfg.SimURL != "" {
		srv.SetURL(d.cfg.SimURL)
	}
	d.simURL = srv.URL()
	d.logf("simulator on %s: a demo org with %s Accounts, %s Contacts and %s Opportunities",
		d.simURL, thousands(int64(d.org.Counts["Account"])), thousands(int64(d.org.Counts["Contact"])), thousands(int64(d.org.Counts["Opportunity"])))
	return nil
}

// readOrg reads from the org the records the instructions name and the
// record counts the load is measured against.
func (d *run) readOrg(ctx context.Context) error {
	one := func(soql string, id, name *string) error {
		return d.sf.Query(ctx, soql, func(r salesforce.Record) error {
			n, _ := r.Get("Name")
			*id = r.ID()
			*name, _ = n.(string)
			return nil
		})
	}
	o := d.org
	if err := one(fmt.Sprintf("SELECT Id, Name FROM Account WHERE %s = '%s'", ExternalIDField, externalID(0)), &o.FirstAccountID, &o.FirstAccountName); err != nil {
		return fmt.Errorf("read the demo Accounts: %w", err)
	}
	if err := one(fmt.Sprintf("SELECT Id, Name FROM Account WHERE %s = '%s'", ExternalIDField, externalID(2)), &o.ThirdAccountID, &o.ThirdAccountName); err != nil {
		return fmt.Errorf("read the demo Accounts: %w", err)
	}
	if o.FirstAccountID != "" {
		if err := one(fmt.Sprintf("SELECT Id, Name FROM Contact WHERE AccountId = '%s' LIMIT 1", o.FirstAccountID), &o.ExampleContactID, &o.ExampleContactName); err != nil {
			return fmt.Errorf("read the demo Contacts: %w", err)
		}
	}
	if o.Counts == nil {
		o.Counts = map[string]int{}
	}
	// The load is measured against what the org itself reports.
	for _, obj := range mappedObjects {
		n, err := d.sf.Count(ctx, "SELECT COUNT() FROM "+obj)
		if err != nil {
			return fmt.Errorf("count %s in the org: %w", obj, err)
		}
		o.Counts[obj] = n
	}
	return nil
}

// accountIDs reads every Account id in external-id order.
func (d *run) accountIDs(ctx context.Context) ([]string, error) {
	type acc struct{ ext, id string }
	var accs []acc
	err := d.sf.Query(ctx, "SELECT Id, "+ExternalIDField+" FROM Account", func(r salesforce.Record) error {
		ext, _ := r.Get(ExternalIDField)
		s, _ := ext.(string)
		accs = append(accs, acc{s, r.ID()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(accs, func(i, j int) bool { return accs[i].ext < accs[j].ext })
	ids := make([]string, len(accs))
	for i, a := range accs {
		ids[i] = a.id
	}
	return ids, nil
}

// install runs the same installer as `pgforce install`.
func (d *run) install(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	from, to, err := pgsql.Install(ctx, conn)
	if err != nil {
		return fmt.Errorf("pgforce install: %w", err)
	}
	if from == "" {
		d.logf("pgforce install: installed pgforce %s (schema pgforce)", to)
	} else {
		d.logf("pgforce install: pgforce %s was already installed", from)
	}
	return nil
}

// startWorker runs `pgforce run` as a child with the settings a user would
// put in its environment.
func (d *run) startWorker(ctx context.Context) error {
	d.workerLog = filepath.Join(d.workDir, "worker.log")
	logFile, err := os.Create(d.workerLog)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.cfg.WorkerExe, "run")
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" || strings.HasPrefix(k, "SALESFORCE_") || strings.HasPrefix(k, "PGFORCE_") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env,
		"DATABASE_URL="+d.dbURL,
		"SALESFORCE_LOGIN_URL="+d.simURL,
		"SALESFORCE_CLIENT_ID="+sim.DefaultClientID,
		"SALESFORCE_CLIENT_SECRET="+sim.DefaultClientSecret,
		"SALESFORCE_USERNAME="+sim.DefaultUsername,
		"SALESFORCE_PASSWORD="+sim.DefaultPassword,
		"PGFORCE_HTTP_ADDR="+d.cfg.HealthAddr,
		"PGFORCE_LOG_LEVEL=info",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group keeps a terminal's Ctrl-C for the demo, which
	// stops the worker with SIGTERM as a service manager would; Pdeathsig
	// covers a demo that dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start the worker (%s run): %w", d.cfg.WorkerExe, err)
	}
	d.worker = cmd
	d.workerEnd = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(d.workerEnd)
	}()
	d.onCleanup(d.stopWorker)
	d.logf("worker started: pid %d, health http://%s/healthz, log %s", cmd.Process.Pid, d.cfg.HealthAddr, d.workerLog)
	select {
	case <-d.workerEnd:
		log := tail(d.workerLog, 20)
		if strings.Contains(log, "PGFORCE_HTTP_ADDR") {
			// The demo sets it from its own flag, which the user knows.
			log += fmt.Sprintf("\n(the demo gives the worker --health-addr %s: pass another, e.g. --health-addr 127.0.0.1:9188)", d.cfg.HealthAddr)
		}
		return fmt.Errorf("the worker exited at start-up:\n%s", log)
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	return nil
}

// stopWorker sends SIGTERM (the worker finishes its batches and exits 0)
// and reports the worker's peak memory.
func (d *run) stopWorker() error {
	select {
	case <-d.workerEnd:
	default:
		// The kernel's high-water mark of the worker's own memory. (The
		// rusage of a child is no use here: a child started by vfork
		// inherits the parent's peak at exec.)
		if _, peak := d.workerMemory(); peak > 0 {
			fmt.Fprintf(d.out, "worker peak RSS (VmHWM): %.1f MB\n", float64(peak)/(1<<20))
		}
		_ = d.worker.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.workerEnd:
		case <-time.After(30 * time.Second):
			_ = d.worker.Process.Kill()
			<-d.workerEnd
		}
	}
	st := d.worker.ProcessState
	if st == nil {
		return nil
	}
	fmt.Fprintf(d.out, "worker stopped (%s)\n", st)
	if !st.Success() && st.ExitCode() != -1 {
		return fmt.Errorf("the worker exited with %s; its log:\n%s", st, tail(d.workerLog, 20))
	}
	return nil
}

// workerExited reports a worker that stopped on its own, with its log.
func (d *run) workerExited() error {
	if d.worker == nil {
		return nil
	}
	select {
	case <-d.workerEnd:
		return fmt.Errorf("the worker stopped (%s); its log:\n%s", d.worker.ProcessState, tail(d.workerLog, 20))
	default:
		return nil
	}
}

// workerMemory returns the worker's current and peak resident memory in
// bytes, from /proc (zero where /proc is not available).
func (d *run) workerMemory() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.worker.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "VmHWM":
			peak = n * 1024
		}
	}
	return rss, peak
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// thousands formats n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
