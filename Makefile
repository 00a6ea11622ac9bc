# pgforce build, test and benchmark entry points. The README documents the
# two a new user needs: `make demo` and `make test`.

GO      ?= go
BIN     := bin/pgforce

.PHONY: all build test test-conformance bench install-extension clean demo

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
	$(MAKE) test-conformance

# jsforce, unmodified and pinned by package-lock.json, against `pgforce sim`.
# jsforce ignores NO_PROXY, so the proxy variables are dropped for loopback.
test-conformance: build tests/conformance/node_modules
	cd tests/conformance && env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY npm test

tests/conformance/node_modules: tests/conformance/package-lock.json
	cd tests/conformance && npm ci --no-audit --no-fund
	touch $@

bench:
	$(GO) run ./tests/bench

# The first five minutes: a throwaway Postgres, a seeded simulated org and the
# worker, the demo mappings, a live status view and three things to try.
# Options go through DEMO_FLAGS, e.g. make demo DEMO_FLAGS="--accounts 50000".
demo: build
	./$(BIN) demo $(DEMO_FLAGS)

clean:
	rm -rf bin bench/results.json
	$(MAKE) -C extension clean
