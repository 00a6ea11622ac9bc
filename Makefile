# pgforce build, test and benchmark entry points. The README documents the
# two a new user needs: `make demo` and `make test`.

GO      ?= go
BIN     := bin/pgforce
VERSION ?= $(shell sed -n 's/^const Version = "\(.*\)"/\1/p' sql/version.go)

.PHONY: all build test test-go test-conformance bench install-extension clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pgforce

# A PGXS install of the extension into the local Postgres, so that
# CREATE EXTENSION pgforce works there. Needs write access to its share dir.
install-extension:
	$(MAKE) -C extension install

# Everything: Go unit tests, SQL behaviour tests and integration tests
# against a throwaway Postgres 15 cluster and the simulator, then the jsforce
# conformance suite. The extension is installed first because one test
# proves that CREATE EXTENSION and `pgforce install` build the same objects.
test: build install-extension
	$(GO) vet ./...
	$(GO) test -p 2 -count=1 -timeout 20m ./...

bench:
	$(GO) run ./tests/bench

clean:
	rm -rf bin bench/results.json
	$(MAKE) -C extension clean
