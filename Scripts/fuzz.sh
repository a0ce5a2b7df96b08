#!/usr/bin/env bash
# libFuzzer targets (Fuzz/sandgate-fuzz/main.swift), built with -sanitize=fuzzer into .build/fuzz:
#   sql        parse → check → render → parse on the demo policy (seeds: Fuzz/corpus)
#   pgwire     the PostgreSQL message decoder (startup and regular messages), Bind value decoding
#              and the PostgreSQL → SQLite translations (seeds: Fuzz/corpus-pgwire)
#   jsonlines  the JSON-lines framer and request parser (seeds: Fuzz/corpus-jsonlines)
# Runs for SECONDS (default 60); crashing inputs land in .build/fuzz/crashes-TARGET/. Long runs are
# manual: `Scripts/fuzz.sh 600 pgwire`.
#   Scripts/fuzz.sh [SECONDS] [TARGET] [extra libFuzzer options…]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
target="${2:-sql}"
shift 2 || shift $# || true
case "$target" in
    sql) seeds=Fuzz/corpus; max_len=2048 ;;
    pgwire) seeds=Fuzz/corpus-pgwire; max_len=65536 ;;
    jsonlines) seeds=Fuzz/corpus-jsonlines; max_len=65536 ;;
    *) echo "unknown target $target (sql, pgwire, jsonlines)"; exit 2 ;;
esac
SANDGATE_FUZZ=1 swift build -c release --scratch-path .build/fuzz --product sandgate-fuzz -Xswiftc -sanitize=fuzzer
mkdir -p ".build/fuzz/corpus-$target" ".build/fuzz/crashes-$target" .build/fuzz/Policies .build/fuzz/Fixtures
cp "$seeds"/* ".build/fuzz/corpus-$target/"
# The loader wants the policy's source to exist; the fuzzer never opens it.
cp Policies/retail.yaml .build/fuzz/Policies/retail.yaml
touch .build/fuzz/Fixtures/retail.sqlite
# Swift's own backtracer would take the crash signal before libFuzzer saves the input.
SWIFT_BACKTRACE=enable=no SANDGATE_FUZZ_TARGET="$target" SANDGATE_FUZZ_POLICY=.build/fuzz/Policies/retail.yaml \
    .build/fuzz/release/sandgate-fuzz ".build/fuzz/corpus-$target" \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1 \
    -artifact_prefix=".build/fuzz/crashes-$target/" "$@"
