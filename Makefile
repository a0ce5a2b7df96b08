# sandgate — two commands: `make serve` and `make test` (README.md).
SWIFT        ?= swift
FIXTURE      := Fixtures/retail.sqlite
FIXTURE_ROWS ?= 5000
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libsqlite3-dev libpcre2-dev

.PHONY: deps build fixture serve demo test bench load clean

## Installs the C libraries with apt when they are missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

build: deps
	$(SWIFT) build

## The demo dataset, reproducible: `sandgate fixtures generate --rows 5000`.
fixture: build
	@[ -f $(FIXTURE) ] || .build/debug/sandgate fixtures generate --rows $(FIXTURE_ROWS) --out $(FIXTURE)

## The gateway on the shipped policies (Ctrl-C stops it): JSON lines on LISTEN, and the
## PostgreSQL front end on PG_LISTEN when given, e.g. `make serve LISTEN=127.0.0.1:7879`.
LISTEN    ?= 127.0.0.1:7878
PG_LISTEN ?=
serve: fixture
	.build/debug/sandgate serve --policies Policies --state var --listen $(LISTEN)$(if $(PG_LISTEN), --pg-listen $(PG_LISTEN))

## A tour of `sandgate query`, `explain`, `describe` and the ledger, without a server.
demo: fixture
	./Scripts/demo.sh

## The shipped policies' own cases (Policies/tests), then the test suites.
test: fixture
	.build/debug/sandgate policy test
	$(SWIFT) test

## Release-build benchmark of issue 2 (masking cost); ROWS=1000000 by default.
bench: deps
	$(SWIFT) run -c release sandgate-bench --rows $${ROWS:-1000000} --runs $${RUNS:-7}

## Issue 4's load benchmark (release build, 1M customers): Benchmarks/load.sh ROWS SECONDS.
load: deps
	./Benchmarks/load.sh $${ROWS:-1000000} $${SECONDS:-10}

clean:
	rm -rf .build var
