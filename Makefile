# sandgate — two commands: `make serve` and `make test` (README.md).
SWIFT        ?= swift
FIXTURE      := Fixtures/retail.sqlite
FIXTURE_ROWS ?= 5000
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libsqlite3-dev libpcre2-dev
## What the real-client tests need: psql, pgjdbc and a JDK, a Python venv (psycopg, pandas, SQLAlchemy).
CLIENT_APT   := postgresql-client libpostgresql-jdbc-java openjdk-17-jdk-headless python3-venv
LISTEN       ?= 127.0.0.1:7878
PG_LISTEN    ?= 127.0.0.1:5433
## The PostgreSQL ledger's tests start their own throw-away server from these binaries.
PG_PACKAGES  := postgresql-15

.PHONY: deps client-deps pg-deps build fixture serve serve-cluster demo test bench bench-ledger load clean

## Installs the C libraries with apt when they are missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

## Real PostgreSQL clients for the tests (apt and a virtual environment in .venv).
client-deps:
	@missing=""; for p in $(CLIENT_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi
	@[ -x .venv/bin/python ] || python3 -m venv .venv
	@.venv/bin/python -c "import psycopg, psycopg2, pandas, sqlalchemy" 2>/dev/null || .venv/bin/pip install -q -r Tests/clients/requirements.txt

## PostgreSQL 15 for the tests (only binaries: Debian's package would also start a cluster; the
## tests never use it).
pg-deps:
	@missing=""; for p in $(PG_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

build: deps
	$(SWIFT) build

## The demo dataset, reproducible: `sandgate fixtures generate --rows 5000`.
fixture: build
	@[ -f $(FIXTURE) ] || .build/debug/sandgate fixtures generate --rows $(FIXTURE_ROWS) --out $(FIXTURE)

## The gateway on the shipped policies: JSON lines on $(LISTEN), PostgreSQL on $(PG_LISTEN) (Ctrl-C stops it).
serve: fixture
	.build/debug/sandgate serve --policies Policies --state var --listen $(LISTEN) --pg-listen $(PG_LISTEN)

## PostgreSQL on 127.0.0.1:55432 and three gateway nodes (7881-7883) sharing it as their ledger.
serve-cluster: fixture pg-deps
	./Scripts/serve-cluster.sh

## A tour of `sandgate query`, `explain`, `describe` and the ledger, without a server.
demo: fixture
	./Scripts/demo.sh

## The shipped policies' own cases (Policies/tests), the test suites, then the real clients.
test: fixture client-deps pg-deps
	.build/debug/sandgate policy test
	$(SWIFT) test
	Tests/clients/run.sh .build/debug/sandgate

## Release-build benchmark of issue 2 (masking cost); ROWS=1000000 by default.
bench: deps
	$(SWIFT) run -c release sandgate-bench --rows $${ROWS:-1000000} --runs $${RUNS:-7}

## Issue 9's ledger benchmark: durable records/s at 1, 8, 64 writers and export rows/s (SQLite;
## LEDGER=postgres://… for PostgreSQL).
bench-ledger: deps
	$(SWIFT) run -c release sandgate-ledger-bench $${LEDGER:-sqlite} $${RECORDS:-20000} $${EXPORT:-1000000}

## Issue 4's load benchmark (release build, 1M customers): Benchmarks/load.sh ROWS SECONDS.
load: deps
	./Benchmarks/load.sh $${ROWS:-1000000} $${SECONDS:-10}

clean:
	rm -rf .build var
