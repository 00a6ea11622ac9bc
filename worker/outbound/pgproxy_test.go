package outbound_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pgProxy sits between a pool and the test cluster's unix socket and, once
// armed, loses the answer to one COMMIT: it forwards the COMMIT of a
// transaction that sent a statement containing trigger, lets Postgres
// carry it out, and drops the connection before the client reads the
// answer (a lost connection, or a network that fails at that moment).
type pgProxy struct {
	dir     string
	trigger []byte
	armed   atomic.Bool
	dropped atomic.Int32
}

// startPgProxy listens next to the cluster and returns a connection string
// through it.
func startPgProxy(t *testing.T, connString, trigger string) (*pgProxy, string) {
	t.Helper()
	u, err := url.Parse(connString)
	require.NoError(t, err)
	q := u.Query()
	upstream := filepath.Join(q.Get("host"), ".s.PGSQL."+q.Get("port"))
	dir, err := os.MkdirTemp("", "pgproxy")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, ".s.PGSQL."+q.Get("port")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	p := &pgProxy{dir: dir, trigger: []byte(trigger)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			go p.serve(c, s)
		}
	}()
	q.Set("host", dir)
	u.RawQuery = q.Encode()
	return p, u.String()
}

func (p *pgProxy) serve(client, server net.Conn) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { _ = client.Close(); _ = server.Close() }) }
	defer closeBoth()
	var muted atomic.Bool
	go func() {
		defer closeBoth()
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !muted.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// Untyped messages first: SSL/GSS requests, then the startup message.
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(client, hdr[:4]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		body := make([]byte, n-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		if _, err := server.Write(append(hdr[:4:4], body...)); err != nil {
			return
		}
		if len(body) >= 4 {
			code := binary.BigEndian.Uint32(body[:4])
			if code == 80877103 || code == 80877104 { // SSLRequest, GSSENCRequest
				continue
			}
		}
		break
	}
	inTx := false // a statement of this transaction held the trigger
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		body := make([]byte, n-4)
		if _, err := io.ReadFull(client, body); err != nil {
			return
		}
		msg := append(hdr[:], body...)
		if bytes.Contains(body, p.trigger) {
			inTx = true
		}
		if hdr[0] == 'Q' {
			text := strings.ToLower(strings.TrimSpace(strings.TrimRight(string(body), "\x00")))
			if strings.HasPrefix(text, "begin") {
				inTx = false
			}
			if strings.HasPrefix(text, "commit") && inTx && p.armed.CompareAndSwap(true, false) {
				// Postgres commits; its answer never reaches the client.
				muted.Store(true)
				_, _ = server.Write(msg)
				time.Sleep(300 * time.Millisecond)
				p.dropped.Add(1)
				return
			}
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}
