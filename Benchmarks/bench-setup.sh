# Sourced by the load benchmarks (load.sh, pgbench.sh, ledger-lookup.sh): builds the release
# binaries, generates the ROWS-customer fixture once, and writes the benchmark policies (the
# customers table, consumer `bench` with key $KEY) into POLICIES.
#   bench_setup ROWS POLICIES [scram]     sets BIN, DIR, KEY; `scram` adds a SCRAM verifier (pgwire)
bench_setup() {
  local rows=$1 policies=$2 scram=${3:-}
  DIR=.build/bench
  BIN=.build/release
  KEY=bench-load-key
  mkdir -p "$policies"
  swift build -c release --product sandgate >/dev/null
  swift build -c release --product sandgate-load >/dev/null
  [ -f "$DIR/retail-$rows.sqlite" ] || "$BIN/sandgate" fixtures generate --rows "$rows" --out "$DIR/retail-$rows.sqlite"
  local hash verifier=""
  hash=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
  if [ -n "$scram" ]; then
    verifier=$(python3 - "$KEY" <<'PY'
import base64, hashlib, hmac, os, sys
salt = os.urandom(16); salted = hashlib.pbkdf2_hmac("sha256", sys.argv[1].encode(), salt, 4096)
client = hmac.new(salted, b"Client Key", "sha256").digest(); server = hmac.new(salted, b"Server Key", "sha256").digest()
b = lambda x: base64.b64encode(x).decode()
print(f"SCRAM-SHA-256$4096:{b(salt)}${b(hashlib.sha256(client).digest())}:{b(server)}")
PY
)
    verifier="    scram_sha256: \"$verifier\""$'\n'
  fi
  # The source path is relative to the policy file: POLICIES lives in $DIR.
  cat > "$policies/retail.yaml" <<YAML
source: ../retail-$rows.sqlite
limits: { max_rows: 1000, timeout_ms: 2000 }
pricing: { currency: CNY, per_query: 1000, per_row: 20, per_million_vm_steps: 500 }
tables:
  customers:
    columns:
      customer_id: {}
      city: {}
      status: {}
      phone: { mask: phone_cn }
YAML
  printf 'consumers:\n  bench:\n    key_sha256: %s\n%s    grants:\n      retail: {}\n' "$hash" "$verifier" > "$policies/consumers.yaml"
}
