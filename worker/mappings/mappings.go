// Package mappings reads pgforce.mapping, the user's list of synced objects,
// and tells the worker's services when it changes.
//
// Both sync directions use it: inbound (worker/inbound) and outbound
// (worker/outbound). A mapping change (insert, edit, pause, resume, reload,
// delete, or an org edit) raises NOTIFY pgforce_mapping from a statement
// trigger (sql/110_inbound.sql); Watch listens on it and also re-reads on a
// slow timer, so a missed notification (a dropped connection) costs at most
// one safety interval.
package mappings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the NOTIFY channel raised when mappings or orgs change.
const Channel = "pgforce_mapping"

// Mapping states, as pgforce.mapping.state spells them.
const (
	StateNew        = "new"
	StateDescribing = "describing"
	StateLoading    = "loading"
	StateSynced     = "synced"
	StatePaused     = "paused"
	StateError      = "error"
)

// Mapping is one row of pgforce.mapping joined with its org.
type Mapping struct {
	ID        int
	Org       string
	SObject   string
	Schema    string // the org's data schema
	TableName string
	// Fields are the Salesforce API names the user listed (system fields
	// Id, SystemModstamp, IsDeleted, CreatedDate are implied).
	Fields       []string
	Mode         string // read_only or read_write
	UpsertField  string
	Inbound      string // auto, cdc or poll
	PollInterval time.Duration
	Conflict     string
	State        string
	StateDetail  string
	// Columns is what the worker passed to pgforce.ensure_table after
	// describing the object; nil before the first describe.
	Columns           []Column
	Paused            bool // the mapping or its org is paused
	InboundWatermark  *time.Time
	CDCReplayID       string
	ReloadRequestedAt *time.Time
	ResyncRequestedAt *time.Time
	HardDelete        bool
	InboundOwner      string
	InboundMode       string
	APIVersion        string
	APIBudgetPct      int
	UpdatedAt         time.Time
}

// Column is one described field as stored in pgforce.mapping.columns. Name,
// Type, Length, Precision and Scale are what pgforce.ensure_table reads;
// Compound and Component say where a part of a compound field (BillingCity
// of BillingAddress) sits in change events, which nest it as
// BillingAddress.City. The rest is what the outbound side needs to write
// the field: whether Salesforce lets it be set on create and on update
// (nil when the describe did not say, which counts as yes), and the object
// and relationship a reference points to.
type Column struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Length      int      `json:"length,omitempty"`
	Precision   int      `json:"precision,omitempty"`
	Scale       int      `json:"scale,omitempty"`
	Compound    string   `json:"compound,omitempty"`
	Component   string   `json:"component,omitempty"`
	Createable  *bool    `json:"createable,omitempty"`
	Updateable  *bool    `json:"updateable,omitempty"`
	Calculated  bool     `json:"calculated,omitempty"`
	ReferenceTo []string `json:"referenceTo,omitempty"`
	Relation    string   `json:"relationshipName,omitempty"`
	// KeyPrefix, on the Id column only, is the first three characters of
	// every Id of the object (001 for Account).
	KeyPrefix string `json:"keyPrefix,omitempty"`
}

// PGName is the column's name in the mapped table: the lower-cased API name.
func (c Column) PGName() string { return strings.ToLower(c.Name) }

// Table returns the mapped table as a quoted, schema-qualified identifier.
func (m *Mapping) Table() string {
	return pgx.Identifier{m.Schema, m.TableName}.Sanitize()
}

// Column returns the described column of a Salesforce field (case-insensitive).
func (m *Mapping) Column(field string) (Column, bool) {
	for _, c := range m.Columns {
		if strings.EqualFold(c.Name, field) {
			return c, true
		}
	}
	return Column{}, false
}

// Querier is what List and Get need: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const selectMappings = `
SELECT m.id, m.org, m.sobject, o.schema_name, m.table_name, m.fields, m.mode,
       coalesce(m.upsert_field, ''), m.inbound, m.poll_interval, m.conflict, m.state,
       coalesce(m.state_detail, ''), m.columns, m.paused OR o.paused,
       m.inbound_watermark, coalesce(m.cdc_replay_id, ''), m.reload_requested_at,
       m.resync_requested_at, m.hard_delete, coalesce(m.inbound_owner, ''),
       coalesce(m.inbound_mode, ''), o.api_version, o.api_budget_pct, m.updated_at
FROM pgforce.mapping m JOIN pgforce.org o ON o.name = m.org`

// List returns every mapping, ordered by id.
func List(ctx context.Context, q Querier) ([]Mapping, error) {
	return query(ctx, q, selectMappings+` ORDER BY m.id`)
}

// ErrNotFound is returned by Get for a mapping that does not exist (any more).
var ErrNotFound = errors.New("mappings: no such mapping")

// Get returns one mapping.
func Get(ctx context.Context, q Querier, id int) (*Mapping, error) {
	ms, err := query(ctx, q, selectMappings+` WHERE m.id = $1`, id)
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: id %d", ErrNotFound, id)
	}
	return &ms[0], nil
}

func query(ctx context.Context, q Querier, sql string, args ...any) ([]Mapping, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("mappings: read pgforce.mapping: %w", err)
	}
	var out []Mapping
	for rows.Next() {
		var m Mapping
		var cols []byte
		if err := rows.Scan(&m.ID, &m.Org, &m.SObject, &m.Schema, &m.TableName, &m.Fields, &m.Mode,
			&m.UpsertField, &m.Inbound, &m.PollInterval, &m.Conflict, &m.State,
			&m.StateDetail, &cols, &m.Paused,
			&m.InboundWatermark, &m.CDCReplayID, &m.ReloadRequestedAt,
			&m.ResyncRequestedAt, &m.HardDelete, &m.InboundOwner,
			&m.InboundMode, &m.APIVersion, &m.APIBudgetPct, &m.UpdatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("mappings: scan pgforce.mapping: %w", err)
		}
		if len(cols) > 0 {
			if err := json.Unmarshal(cols, &m.Columns); err != nil {
				rows.Close()
				return nil, fmt.Errorf("mappings: columns of mapping %d: %w", m.ID, err)
			}
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Execer is what SetState needs.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SetState records the worker's view of a mapping for pgforce.status. It
// never overrides a pause: a paused mapping keeps state paused.
func SetState(ctx context.Context, q Execer, id int, state, detail string) error {
	_, err := q.Exec(ctx, `UPDATE pgforce.mapping SET state = $2, state_detail = nullif($3, '')
		WHERE id = $1 AND NOT paused AND (state, coalesce(state_detail, '')) IS DISTINCT FROM ($2, $3)`, id, state, detail)
	if err != nil {
		return fmt.Errorf("mappings: set state of mapping %d: %w", id, err)
	}
	return nil
}

// Directions of a mapping's sync, as pgforce.sync_failure names them.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Retrying records, for pgforce.status, that an attempt of direction of
// mapping id failed and will be tried again; NotRetrying that one worked,
// or that the mapping is no longer retried (it is in error until the user
// fixes it).
// Both are best effort: the attempt's own handling of the failure goes on
// whatever they return, which is for the log.
func Retrying(ctx context.Context, q Execer, id int, direction string, failure error) error {
	if _, err := q.Exec(ctx, `SELECT pgforce._sync_failed($1, $2, $3)`, id, direction, failure.Error()); err != nil {
		return fmt.Errorf("mappings: record the failure of mapping %d: %w", id, err)
	}
	return nil
}

// NotRetrying: see Retrying.
func NotRetrying(ctx context.Context, q Execer, id int, direction string) error {
	if _, err := q.Exec(ctx, `SELECT pgforce._sync_recovered($1, $2)`, id, direction); err != nil {
		return fmt.Errorf("mappings: record the recovery of mapping %d: %w", id, err)
	}
	return nil
}

// Watch calls fn with the full mapping list at start, after every change
// notification (several close together are folded into one call), and every
// safety interval, until ctx ends. fn runs on Watch's goroutine; a slow fn
// delays the next call but never loses a change, since every call re-reads
// the whole list. Errors reading the list are logged and retried.
func Watch(ctx context.Context, pool *pgxpool.Pool, safety time.Duration, log *slog.Logger, fn func([]Mapping)) error {
	if safety <= 0 {
		safety = 30 * time.Second
	}
	notified := make(chan struct{}, 1)
	go listen(ctx, pool, log, notified)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notified:
			// Fold a burst of notifications into one re-read.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		case <-timer.C:
		}
		ms, err := List(ctx, pool)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("mappings: re-read failed; retrying", "err", err)
			timer.Reset(time.Second)
			continue
		}
		fn(ms)
		timer.Reset(safety)
	}
}

// listen holds one connection in LISTEN until ctx ends, reconnecting after
// failures; a reconnect also signals, since changes may have been missed.
func listen(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, notified chan<- struct{}) {
	signal := func() {
		select {
		case notified <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		err := func() error {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
				return err
			}
			// Unlisten before the connection goes back to the pool, so it
			// does not collect notifications for its next user.
			defer func() {
				c, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if _, err := conn.Exec(c, "UNLISTEN *"); err != nil {
					conn.Conn().Close(c)
				}
			}()
			signal()
			for {
				if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
					return err
				}
				signal()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		log.Warn("mappings: LISTEN connection lost; reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
