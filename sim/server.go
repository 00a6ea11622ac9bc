// Package sim is a Salesforce org in a box: OAuth, REST (sObjects, Collections, Composite, Tree, query),
// Bulk API 2.0 and Change Data Capture over CometD, served over plain HTTP on loopback with the wire formats
// of a real org, so that unmodified clients (jsforce, pgforce's worker) run against it. Operator hooks under
// /__sim/ inject faults, count calls, edit records as a UI user would and seed data for benchmarks.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgforce/pgforce/sim/cometd"
)

// Config configures a simulated org. Zero values take the documented defaults.
type Config struct {
	ClientID     string
	ClientSecret string
	Username     string
	Password     string
	// Schema declares custom objects and fields; SchemaFile is read when Schema is nil.
	Schema     *Schema
	SchemaFile string
	// APILimit is the daily API request allocation (default 100000).
	APILimit int
	// TokenTTL is how long an access token stays valid after it is issued (default 2h).
	TokenTTL time.Duration
	// JWTCertPEM is the certificate or public key (PEM) that verifies JWT bearer assertions.
	JWTCertPEM []byte
	// EventRetention is how long change events stay replayable (default 72h).
	EventRetention time.Duration
	// ConnectTimeout is how long a CometD /meta/connect is held with nothing to deliver (default 110s).
	ConnectTimeout time.Duration
	// APIVersion is the newest version the org offers (default "62.0").
	APIVersion string
	// BulkProcessDelay is how long a Bulk API 2.0 job stays in each intermediate state (UploadComplete,
	// InProgress) before moving on, so clients see the platform's asynchronous progression and a results
	// request before completion answers 412 JOB_NOT_COMPLETE. Default DefaultBulkProcessDelay; a negative
	// value means no delay (processing still runs asynchronously).
	BulkProcessDelay time.Duration
	// Clock replaces time.Now (tests).
	Clock func() time.Time
	// RotateRefreshTokens is the connected app's "Enable Refresh Token
	// Rotation": each refresh_token grant answers a new refresh token and
	// invalidates the one it was made with.
	RotateRefreshTokens bool
}

// Defaults of Config and of the `pgforce sim` flags.
const (
	DefaultClientID     = "pgforce-sim"
	DefaultClientSecret = "pgforce-sim-secret"
	DefaultUsername     = "sim@pgforce.dev"
	DefaultPassword     = "pgforce"
	DefaultAPILimit     = 100000
	DefaultTokenTTL     = 2 * time.Hour
	DefaultAPIVersion   = "62.0"
	// DefaultBulkProcessDelay keeps a bulk job visibly in UploadComplete and InProgress without slowing tests.
	DefaultBulkProcessDelay = 20 * time.Millisecond
)

func (c *Config) setDefaults() {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.ClientSecret == "" {
		c.ClientSecret = DefaultClientSecret
	}
	if c.Username == "" {
		c.Username = DefaultUsername
	}
	if c.Password == "" {
		c.Password = DefaultPassword
	}
	if c.APILimit <= 0 {
		c.APILimit = DefaultAPILimit
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.APIVersion == "" {
		c.APIVersion = DefaultAPIVersion
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.BulkProcessDelay == 0 {
		c.BulkProcessDelay = DefaultBulkProcessDelay
	} else if c.BulkProcessDelay < 0 {
		c.BulkProcessDelay = 0
	}
}

// Server is a running simulated org.
type Server struct {
	cfg     Config
	cat     *Catalog
	store   *Store
	bus     *cometd.Bus
	streams *cometd.Server
	bulk    bulkServer
	jwtKey  any

	orgID  string
	userID string

	url      string
	listener net.Listener
	httpSrv  *http.Server
	handler  http.Handler

	mu       sync.Mutex
	sessions map[string]*session
	refresh  map[string]string // refresh token -> user id
	cursors  map[string]*cursor
	calls    map[string]int64
	faults   []*activeFault

	apiUsed     atomic.Int64
	forceLimit  atomic.Bool
	locatorSeq  atomic.Uint64
	faultRandom atomic.Uint64
}

type session struct {
	user    string
	expires time.Time
}

// bulkServer is the part of the Bulk API 2.0 server the simulator uses.
type bulkServer interface {
	http.Handler
	Reset()
}

// New builds an org without listening; serve it with Handler (httptest) or use Start.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Schema == nil && cfg.SchemaFile != "" {
		s, err := LoadSchema(cfg.SchemaFile)
		if err != nil {
			return nil, err
		}
		cfg.Schema = s
	}
	cat, err := buildCatalog(cfg.Schema)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, cat: cat, sessions: map[string]*session{}, refresh: map[string]string{},
		cursors: map[string]*cursor{}, calls: map[string]int64{}}
	if len(cfg.JWTCertPEM) > 0 {
		if s.jwtKey, err = parseJWTKey(cfg.JWTCertPEM); err != nil {
			return nil, err
		}
	}
	s.orgID = to18("00DR00000000001")
	s.store = newStore(cat, cfg.Clock)
	s.bus = cometd.NewBus(cfg.EventRetention, cfg.Clock)
	s.store.publish = func(events ...cometd.RawEvent) { s.bus.PublishRaw(events...) }
	s.streams = cometd.NewServer(s.bus, cometd.Options{
		Authenticate:   s.authenticateStreaming,
		ValidChannel:   s.validChannel,
		ConnectTimeout: cfg.ConnectTimeout,
		Clock:          cfg.Clock,
	})
	s.bulk = newBulk(s)
	s.seedUser()
	s.handler = http.HandlerFunc(s.serve)
	return s, nil
}

// seedUser creates the org's one user, who owns everything the API creates.
func (s *Server) seedUser() {
	u := s.cat.Object("User")
	fields := map[string]any{"Username": s.cfg.Username, "LastName": "User", "FirstName": "Sim", "Alias": "simuser", "Email": s.cfg.Username}
	if !strings.Contains(s.cfg.Username, "@") {
		fields["Email"] = "sim@pgforce.dev"
	}
	id := to18("005R00000000001")
	t := s.store.begin(Tx{User: id})
	res := t.insert(s.store.tables[u], fields, nil, &id)
	t.events = nil // the org's own user is not a change anyone subscribed to
	t.end(true)
	if !res.OK() {
		panic(fmt.Sprintf("sim: seeding the user failed: %+v", res.Errors))
	}
	u.ids.n.Store(1)
	s.userID = id
}

// Start builds an org and serves it on listen ("127.0.0.1:0" picks a free port) until ctx ends or Close.
func Start(ctx context.Context, listen string, cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("sim: listen on %s: %w", listen, err)
	}
	s.listener = ln
	s.SetURL("http://" + ln.Addr().String())
	s.httpSrv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = s.httpSrv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	return s, nil
}

// Handler serves the org; SetURL must name the address it is reachable at.
func (s *Server) Handler() http.Handler { return s.handler }

// SetURL sets the instance URL (for servers started with Handler under httptest).
func (s *Server) SetURL(u string) { s.url = strings.TrimSuffix(u, "/") }

// URL returns the instance URL, which is also the login URL.
func (s *Server) URL() string { return s.url }

// OrgID and UserID return the org's id and its user's id.
func (s *Server) OrgID() string  { return s.orgID }
func (s *Server) UserID() string { return s.userID }

// Close stops serving.
func (s *Server) Close() error {
	if s.httpSrv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.httpSrv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	_ = s.httpSrv.Close()
	return nil
}

var versionPath = regexp.MustCompile(`^/services/data/v(\d+\.\d)(/.*)?$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/__sim/") {
		s.serveHooks(w, r)
		return
	}
	if tooLong(w, r) {
		return
	}
	s.count(r)
	handled, lose := s.applyFaults(w, r)
	if handled {
		return
	}
	if lose {
		s.route(&unanswered{header: http.Header{}}, r)
		dropConnection(w)
		return
	}
	s.route(w, r)
}

// route hands a call to the handler of its endpoint.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/services/oauth2/token":
		s.serveToken(w, r)
	case p == "/services/oauth2/revoke":
		s.serveRevoke(w, r)
	case p == "/services/oauth2/userinfo":
		s.serveUserInfo(w, r)
	case strings.HasPrefix(p, "/id/"):
		s.serveIdentity(w, r)
	case p == "/services/data" || p == "/services/data/":
		s.serveVersions(w, r)
	case strings.HasPrefix(p, "/cometd/"):
		s.streams.ServeHTTP(w, r)
	case strings.HasPrefix(p, "/services/data/"):
		s.serveData(w, r)
	default:
		writeErrors(w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "The requested resource does not exist"})
	}
}

// serveData authenticates, enforces and counts the API allocation, then routes a /services/data call.
func (s *Server) serveData(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/services/data/latest" || strings.HasPrefix(p, "/services/data/latest/") {
		p = "/services/data/v" + s.cfg.APIVersion + strings.TrimPrefix(p, "/services/data/latest")
	}
	m := versionPath.FindStringSubmatch(p)
	if m == nil {
		writeErrors(w, http.StatusNotFound, APIError{Code: "NOT_FOUND", Message: "The requested resource does not exist"})
		return
	}
	user, ok := s.authenticate(r)
	if !ok {
		writeErrors(w, http.StatusUnauthorized, APIError{Code: "INVALID_SESSION_ID", Message: "Session expired or invalid"})
		return
	}
	limit := int64(s.cfg.APILimit)
	if s.forceLimit.Load() || s.apiUsed.Load() >= limit {
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.apiUsed.Load(), limit))
		writeErrors(w, http.StatusForbidden, APIError{Code: "REQUEST_LIMIT_EXCEEDED", Message: "TotalRequests Limit exceeded."})
		return
	}
	used := s.apiUsed.Add(1)
	w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", used, limit))
	version := m[1]
	rest := strings.Trim(m[2], "/")
	var segs []string
	if rest != "" {
		segs = strings.Split(rest, "/")
	}
	c := &call{s: s, w: w, r: r, version: version, segs: segs, user: user, ctx: r.Context()}
	if len(segs) > 0 && segs[0] == "jobs" {
		s.bulk.ServeHTTP(w, withBulkOrigin(r, version))
		return
	}
	c.route()
}

// call is one REST request being served.
type call struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context
	version string
	segs    []string
	user    string
}

// tx describes the call's writes for change events: changeOrigin comes from Sforce-Call-Options.
func (c *call) tx() Tx { return Tx{User: c.user, Origin: origin("rest", c.version, c.r)} }

func origin(api, version string, r *http.Request) string {
	o := "com/salesforce/api/" + api + "/" + version
	if client := callOptionsClient(r.Header.Get("Sforce-Call-Options")); client != "" {
		o += ";client=" + client
	}
	return o
}

// callOptionsClient extracts client=NAME from a Sforce-Call-Options header ("client=worker, defaultNamespace=x").
func callOptionsClient(h string) string {
	for _, part := range strings.FieldsFunc(h, func(r rune) bool { return r == ',' || r == ';' }) {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "client") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (s *Server) bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	for _, p := range []string{"Bearer ", "OAuth ", "bearer ", "oauth "} {
		if strings.HasPrefix(h, p) {
			return strings.TrimSpace(h[len(p):])
		}
	}
	return ""
}

// authenticate returns the user of a valid, unexpired access token.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	tok := s.bearer(r)
	if tok == "" {
		tok = r.URL.Query().Get("oauth_token")
	}
	if tok == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[tok]
	if sess == nil {
		return "", false
	}
	if !s.cfg.Clock().Before(sess.expires) {
		delete(s.sessions, tok)
		return "", false
	}
	return sess.user, true
}

func (s *Server) authenticateStreaming(r *http.Request) error {
	if _, ok := s.authenticate(r); !ok {
		return errors.New("401::Authentication invalid")
	}
	return nil
}

// validChannel accepts the change event channel of every object of the catalog selected for Change Data
// Capture; the channel of an object with "cdc": false is unknown, as on an org where it is not selected.
func (s *Server) validChannel(channel string) bool {
	entity, all, ok := cometd.EntityForChannel(channel)
	if !ok {
		return false
	}
	if all {
		return true
	}
	o := s.cat.Object(entity)
	return o != nil && o.Name == entity && !o.NoCDC
}

// jsonContentType is what every REST answer carries; jsforce parses bodies by it.
const jsonContentType = "application/json;charset=UTF-8"

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

type wireError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

func writeErrors(w http.ResponseWriter, status int, errs ...APIError) {
	out := make([]wireError, len(errs))
	for i, e := range errs {
		out[i] = wireError{Message: e.Message, ErrorCode: e.Code, Fields: e.Fields}
	}
	writeJSON(w, status, out)
}

// writeRecordErrors answers the errors of a record save (create, update, upsert, delete): as on the
// platform their "fields" is always present, [] when no field is to blame
// ([{"message":"entity is deleted","errorCode":"ENTITY_IS_DELETED","fields":[]}]).
func writeRecordErrors(w http.ResponseWriter, status int, errs ...APIError) {
	type recordError struct {
		Message   string   `json:"message"`
		ErrorCode string   `json:"errorCode"`
		Fields    []string `json:"fields"`
	}
	out := make([]recordError, len(errs))
	for i, e := range errs {
		fields := e.Fields
		if fields == nil {
			fields = []string{}
		}
		out[i] = recordError{Message: e.Message, ErrorCode: e.Code, Fields: fields}
	}
	writeJSON(w, status, out)
}

func (s *Server) serveVersions(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeErrors(w, http.StatusMethodNotAllowed, APIError{Code: "METHOD_NOT_ALLOWED", Message: "HTTP Method '" + r.Method + "' not allowed. Allowed are GET,HEAD"})
		return
	}
	var out []map[string]string
	var top int
	_, _ = fmt.Sscanf(s.cfg.APIVersion, "%d", &top)
	for v := 31; v <= top; v++ {
		out = append(out, map[string]string{"label": releaseName(v), "url": fmt.Sprintf("/services/data/v%d.0", v), "version": fmt.Sprintf("%d.0", v)})
	}
	writeJSON(w, http.StatusOK, out)
}

// releaseName names the release of an API version: three releases a year, Winter '25 = 62.0.
func releaseName(v int) string {
	seasons := []string{"Winter", "Spring", "Summer"}
	d := v - 62
	idx := ((d % 3) + 3) % 3
	year := 25 + (d-idx)/3
	return fmt.Sprintf("%s '%02d", seasons[idx], year)
}

// MaxURIAndHeaderBytes is Salesforce's cap on one REST request's URI and
// headers together (help article 000386264): a longer URI is answered 414
// URI Too Long, a URI and headers that are longer together 431 Request
// Header Fields Too Large. A SOQL query sent in the URI of a GET meets it
// with a few hundred selected fields.
const MaxURIAndHeaderBytes = 16384

// tooLong answers a request over MaxURIAndHeaderBytes as Salesforce does.
func tooLong(w http.ResponseWriter, r *http.Request) bool {
	n := len(r.RequestURI)
	if n > MaxURIAndHeaderBytes {
		http.Error(w, "URI Too Long", http.StatusRequestURITooLong)
		return true
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // "k: v\r\n"
		}
	}
	if n > MaxURIAndHeaderBytes {
		http.Error(w, "Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
		return true
	}
	return false
}
