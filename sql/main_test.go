package sql_test

import (
	"testing"

	"github.com/pgforce/pgforce/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
