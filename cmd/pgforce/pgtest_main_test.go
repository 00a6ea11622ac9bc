package main

import (
	"testing"

	"github.com/pgforce/pgforce/internal/pgtest"
)

// TestMain starts the throwaway Postgres that `pgforce install` is tested
// against (see install_test.go).
func TestMain(m *testing.M) { pgtest.Main(m) }
