# The targets CI runs (.ci/run calls `make ci`); a person runs the same.
GO        ?= go
FUZZTIME  ?= 10s
PKGS      := ./...
# Every fuzz target, as package:Target.
FUZZ_TARGETS := ./mux:FuzzParseHeader ./mux:FuzzSession ./grid:FuzzHandshake ./gateway/contract:FuzzServeProcess

.PHONY: all test ci lint vet staticcheck fmt-check generate-check unit fuzz fuzz-long bench bench-smoke demo

all: test

## test: everything CI checks: lint, generated code, race tests, fuzz smoke, benchmarks once.
test: lint generate-check unit fuzz bench-smoke

ci: test

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

## generate-check: regenerate code (msgp, protobuf) and fail if it differs from what is committed.
generate-check:
	$(GO) generate $(PKGS)
	@git diff --exit-code -- '*.go' || (echo "generated code is stale: run 'go generate ./...' and commit"; exit 1)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

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
