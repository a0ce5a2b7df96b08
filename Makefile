# sandgate — two commands: `make serve` and `make test` (README.md).
SWIFT        ?= swift
FIXTURE      := Fixtures/retail.sqlite
FIXTURE_ROWS ?= 5000
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libsqlite3-dev libpcre2-dev

.PHONY: deps build fixture serve test bench clean

## Installs the C libraries with apt when they are missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

build: deps
	$(SWIFT) build

## The demo dataset, reproducible: `sandgate fixtures generate --rows 5000`.
fixture: build
	@[ -f $(FIXTURE) ] || .build/debug/sandgate fixtures generate --rows $(FIXTURE_ROWS) --out $(FIXTURE)

serve: fixture
	./Scripts/demo.sh

test: deps
	$(SWIFT) build
	$(SWIFT) test

## Release-build benchmark of issue 2 (masking cost); ROWS=1000000 by default.
bench: deps
	$(SWIFT) run -c release sandgate-bench --rows $${ROWS:-1000000} --runs $${RUNS:-7}

clean:
	rm -rf .build var
