# The targets CI runs (.ci/run calls `make ci`); a person runs the same.
GO        ?= go
FUZZTIME  ?= 10s
PKGS      := ./...
# Every fuzz target, as package:Target.
FUZZ_TARGETS := ./mux:FuzzParseHeader ./mux:FuzzSession ./grid:FuzzHandshake ./gateway/contract:FuzzServeProcess

.PHONY: all test ci lint vet staticcheck fmt-check generate-check unit deploy-test fuzz fuzz-long bench bench-smoke demo

all: test

## test: everything CI checks: lint, generated code, race tests (the deploy module's too), fuzz smoke, benchmarks once.
test: lint generate-check unit deploy-test fuzz bench-smoke

ci: test

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...
	cd internal/tools/tracegaps && $(GO) vet ./...

# staticcheck is a tool of the main module; deploy/ and the tracegaps tool
# (modules of their own) are checked with the same binary.
staticcheck:
	$(GO) tool staticcheck $(PKGS)
	@tmp=$$(mktemp -d); $(GO) build -o $$tmp/staticcheck honnef.co/go/tools/cmd/staticcheck && (cd deploy && $$tmp/staticcheck ./...) && (cd internal/tools/tracegaps && $$tmp/staticcheck ./...); rc=$$?; rm -rf $$tmp; exit $$rc

## generate-check: regenerate code (msgp, protobuf) and fail if it differs from what is committed.
generate-check:
	$(GO) generate $(PKGS)
	@git diff --exit-code -- '*.go' || (echo "generated code is stale: run 'go generate ./...' and commit"; exit 1)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	cd internal/tools/tracegaps && $(GO) test -race -count=1 ./...

## deploy-test: the Dockerfile, Kubernetes manifests and systemd units against the binary (deploy/ is a module of its own).
deploy-test:
	cd deploy && $(GO) test -race -count=1 -timeout 10m ./...

## fuzz: each fuzz target for FUZZTIME (a smoke run in CI; `make fuzz FUZZTIME=5m` for real).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZTIME=60s

## bench-smoke: every benchmark compiles and runs once.
bench-smoke:
	$(GO) test -run='^$$' -bench=. -benchtime=1x $(PKGS)

## bench: the comparison benchmarks for real.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=2s ./mux ./internal/bench

demo:
	$(GO) run ./cmd/gridmesh demo
