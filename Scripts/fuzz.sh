#!/usr/bin/env bash
# The parser fuzzer of issue 7: libFuzzer drives parse → check → render → parse on the demo
# policy (Fuzz/sandgate-fuzz/FuzzTarget.swift). Builds with -sanitize=fuzzer into .build/fuzz,
# starts from the seed corpus in Fuzz/corpus, runs for SECONDS (default 60), and leaves crashing
# inputs in .build/fuzz/crashes/. Long runs are manual: `Scripts/fuzz.sh 600`.
#   Scripts/fuzz.sh [SECONDS] [extra libFuzzer options…]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
SANDGATE_FUZZ=1 swift build -c release --scratch-path .build/fuzz --product sandgate-fuzz -Xswiftc -sanitize=fuzzer
mkdir -p .build/fuzz/corpus .build/fuzz/crashes .build/fuzz/Policies .build/fuzz/Fixtures
cp Fuzz/corpus/* .build/fuzz/corpus/
# The loader wants the policy's source to exist; the fuzzer never opens it.
cp Policies/retail.yaml .build/fuzz/Policies/retail.yaml
touch .build/fuzz/Fixtures/retail.sqlite
# Swift's own backtracer would take the crash signal before libFuzzer saves the input.
SWIFT_BACKTRACE=enable=no SANDGATE_FUZZ_POLICY=.build/fuzz/Policies/retail.yaml .build/fuzz/release/sandgate-fuzz .build/fuzz/corpus \
    -max_total_time="$seconds" -max_len=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix=.build/fuzz/crashes/ "$@"
