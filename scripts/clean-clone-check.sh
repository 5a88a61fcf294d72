#!/usr/bin/env bash
# Clean-clone check: proves that the README's quick start works from a fresh
# `git clone` of the committed HEAD (uncommitted changes are NOT included):
#
#   1. git clone this repository's HEAD into a temporary directory;
#   2. `make run` there in the background with DATABASE_URL unset, so that the
#      clone starts its own dev cluster (scripts/dev-db.sh) and the server;
#   3. wait for GET /readyz;
#   4. create a platform service token with the CLI
#      (`cargo run -- admin create-service-token --platform ...`);
#   5. with curl: create a tenant, issue a key for it, verify the key;
#   6. stop the server and the clone's dev cluster, remove the temp dir.
#
# It prints "clean-clone check: 1 passed, 0 failed" on success and exits 0;
# otherwise it prints the server log and exits 1.
#
# Build time: the clone shares the main checkout's cargo target dir
# (CARGO_TARGET_DIR, default <repo>/target), so the dependencies compiled by
# `make test`/`make lint` are reused and only the keyward crate itself is
# recompiled (cargo keys local crates by their path, so the clone's build does
# not disturb the main checkout's artifacts). For the same reason the clone's
# `make run` uses PROFILE=debug (the test build's profile) rather than the
# release default; set CLEAN_CLONE_PROFILE=release to check that too.
#
# Ports differ from the defaults so that a dev server or dev cluster of the
# main checkout can keep running:
#   CLEAN_CLONE_PG_PORT       dev cluster port of the clone (default 54339)
#   CLEAN_CLONE_HTTP_PORT     server port of the clone     (default 18080)
#   CLEAN_CLONE_PROFILE       PROFILE for `make run`       (default debug)
#   CLEAN_CLONE_READY_TIMEOUT seconds to wait for /readyz, build included
#                             (default 600)
#   CLEAN_CLONE_KEEP=1        keep the temp dir (for debugging)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PG_PORT="${CLEAN_CLONE_PG_PORT:-54339}"
HTTP_PORT="${CLEAN_CLONE_HTTP_PORT:-18080}"
PROFILE="${CLEAN_CLONE_PROFILE:-debug}"
READY_TIMEOUT="${CLEAN_CLONE_READY_TIMEOUT:-600}"
BASE="http://127.0.0.1:$HTTP_PORT"
PERMISSIONS="tenants:admin,keys:read,keys:write,keys:verify,audit:read"

log() { echo "clean-clone: $*" >&2; }

for tool in git make cargo curl python3 setsid; do
  command -v "$tool" >/dev/null 2>&1 || { log "error: '$tool' is required but not installed"; exit 1; }
done

# Same profile flag as the Makefile, so that `cargo run` for the CLI reuses the
# binary that `make run` built.
case "$PROFILE" in
  release) PROFILE_FLAG=(--release) ;;
  debug | dev) PROFILE_FLAG=() ;;
  *) PROFILE_FLAG=(--profile "$PROFILE") ;;
esac

HEAD_SHA="$(git -C "$ROOT" rev-parse --verify HEAD 2>/dev/null)" || {
  log "error: $ROOT has no commit to clone"
  exit 1
}
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  log "note: uncommitted changes in $ROOT are not part of this check (it tests HEAD $HEAD_SHA)"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$ROOT/$CARGO_TARGET_DIR" ;; esac
export KEYWARD_DEV_PG_PORT="$PG_PORT"
export KEYWARD_LISTEN="127.0.0.1:$HTTP_PORT"
unset DATABASE_URL

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keyward-clean-clone.XXXXXX")"
# mktemp makes the dir 0700; as root, the dev cluster runs as user postgres,
# which must be able to reach the clone's .data/.
chmod 0755 "$WORK"
CLONE="$WORK/keyward"
RUN_LOG="$WORK/make-run.log"
RUN_PID=""
FAILED=1

dump_server_log() {
  if [ -s "$RUN_LOG" ]; then
    echo "---- last 60 lines of the clone's 'make run' output ----" >&2
    tail -n 60 "$RUN_LOG" >&2 || true
    echo "---- end ----" >&2
  fi
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
    log "stopping the server (process group $RUN_PID)"
    kill -TERM -- "-$RUN_PID" 2>/dev/null
    for _ in $(seq 1 40); do
      kill -0 -- "-$RUN_PID" 2>/dev/null || break
      sleep 0.25
    done
    kill -KILL -- "-$RUN_PID" 2>/dev/null
    wait "$RUN_PID" 2>/dev/null
  fi
  if [ -f "$CLONE/Makefile" ]; then
    (cd "$CLONE" && make --no-print-directory db-stop) >&2
  fi
  if [ "$FAILED" -ne 0 ]; then
    dump_server_log
  fi
  if [ "${CLEAN_CLONE_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  if [ "$FAILED" -ne 0 ]; then
    echo "clean-clone check: 0 passed, 1 failed"
    [ "$rc" -eq 0 ] && rc=1
  else
    echo "clean-clone check: 1 passed, 0 failed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  log "FAILED: $*"
  exit 1
}

# ---------------------------------------------------------------------------
log "cloning $ROOT at $HEAD_SHA into $CLONE"
git clone --quiet "$ROOT" "$CLONE"
git -C "$CLONE" checkout --quiet --detach "$HEAD_SHA"

if curl -s -o /dev/null --max-time 2 "$BASE/healthz"; then
  fail "something already answers on $BASE; set CLEAN_CLONE_HTTP_PORT to a free port"
fi

log "make run PROFILE=$PROFILE (DATABASE_URL unset, KEYWARD_DEV_PG_PORT=$PG_PORT, KEYWARD_LISTEN=$KEYWARD_LISTEN, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
# Own session and process group, so that cleanup can stop make, cargo and the
# server together. (The dev cluster is detached by pg_ctl and stopped with
# `make db-stop`.)
(cd "$CLONE" && exec setsid make --no-print-directory run PROFILE="$PROFILE" >"$RUN_LOG" 2>&1 </dev/null) &
RUN_PID=$!

log "waiting up to ${READY_TIMEOUT}s for $BASE/readyz (includes the build)"
start=$SECONDS
next_note=$((start + 30))
until curl -fsS -o /dev/null --max-time 5 "$BASE/readyz" 2>/dev/null; do
  if ! kill -0 "$RUN_PID" 2>/dev/null; then
    fail "'make run' exited before the server became ready"
  fi
  if [ $((SECONDS - start)) -ge "$READY_TIMEOUT" ]; then
    fail "server not ready after ${READY_TIMEOUT}s"
  fi
  if [ "$SECONDS" -ge "$next_note" ]; then
    log "still waiting ($((SECONDS - start))s): $(tail -n 1 "$RUN_LOG" 2>/dev/null | cut -c1-120)"
    next_note=$((SECONDS + 30))
  fi
  sleep 1
done
log "server ready after $((SECONDS - start))s"
curl -fsS -o /dev/null --max-time 5 "$BASE/healthz" || fail "GET /healthz did not return 2xx"
# make run generated an audit key into .data/ and serves its public half.
curl -fsS --max-time 5 "$BASE/v1/audit/public-key" | grep -q '"current":"[0-9a-f]\{16\}"' \
  || fail "GET /v1/audit/public-key names no current audit key: make run did not set one up"

# make run migrated as the owner and serves as keyward_server, which may only read and append
# to the audit trail (the two-role setup).
PRIVILEGES="$(cd "$CLONE" && scripts/dev-db.sh psql -X -tA -c "SELECT string_agg(p, ',' ORDER BY p) FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','TRIGGER']) p WHERE has_table_privilege('keyward_server', 'audit_events', p)")" \
  || fail "could not read keyward_server's privileges"
[ "$PRIVILEGES" = "INSERT,SELECT" ] \
  || fail "make run's server role may $PRIVILEGES on audit_events, expected INSERT,SELECT only"
SERVING_AS="$(cd "$CLONE" && scripts/dev-db.sh psql -X -tA -c "SELECT string_agg(DISTINCT usename, ',') FROM pg_stat_activity WHERE datname = 'keyward' AND pid <> pg_backend_pid() AND backend_type = 'client backend'")" \
  || fail "could not read pg_stat_activity"
[ "$SERVING_AS" = "keyward_server" ] || fail "make run's server is connected as '$SERVING_AS', expected keyward_server"
log "make run serves as keyward_server (INSERT,SELECT on audit_events)"

CLONE_DB_URL="$(cd "$CLONE" && scripts/dev-db.sh url)"
log "creating a platform service token with the CLI (DATABASE_URL=$CLONE_DB_URL)"
TOKEN="$(cd "$CLONE" && DATABASE_URL="$CLONE_DB_URL" cargo run --quiet "${PROFILE_FLAG[@]}" -- \
  admin create-service-token --platform --name clean-clone-check --permissions "$PERMISSIONS")" \
  || fail "keyward admin create-service-token failed"
TOKEN="$(printf '%s' "$TOKEN" | tr -d '[:space:]')"
[ -n "$TOKEN" ] || fail "create-service-token printed no token"

RESP="$WORK/response.json"

# post PATH JSON -> prints the HTTP status; the body is in $RESP.
post() {
  curl -sS -o "$RESP" -w '%{http_code}' --max-time 30 -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "$2" "$BASE$1"
}

# expect_status WANT GOT WHAT
expect_status() {
  if [ "$2" != "$1" ]; then
    log "response body: $(head -c 2000 "$RESP" 2>/dev/null)"
    fail "$3: expected HTTP $1, got $2"
  fi
}

# json_get FIELD -> prints the string field of the JSON object in $RESP.
json_get() {
  python3 - "$1" "$RESP" <<'EOF'
import json, sys
field, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    value = json.load(f).get(field)
if not isinstance(value, str) or not value:
    sys.exit(f"field {field!r} missing or not a non-empty string")
print(value)
EOF
}

log "POST /v1/tenants"
status="$(post /v1/tenants '{"slug":"acme","name":"Acme"}')" || true
expect_status 201 "$status" "POST /v1/tenants"
TENANT_ID="$(json_get id)" || fail "POST /v1/tenants: no id in $(head -c 2000 "$RESP")"
log "tenant id: $TENANT_ID"

log "POST /v1/tenants/$TENANT_ID/keys"
status="$(post "/v1/tenants/$TENANT_ID/keys" '{"name":"ci","environment":"live","scopes":["billing:read"]}')" || true
expect_status 201 "$status" "POST /v1/tenants/{id}/keys"
API_KEY="$(json_get token)" || fail "POST /v1/tenants/{id}/keys: no token in the response"

log "POST /v1/verify"
body="$(python3 -c 'import json, sys; print(json.dumps({"key": sys.argv[1], "scopes": ["billing:read"]}))' "$API_KEY")"
status="$(post /v1/verify "$body")" || true
expect_status 200 "$status" "POST /v1/verify"
python3 - "$RESP" <<'EOF' || fail "POST /v1/verify: expected \"valid\": true, got $(head -c 2000 "$RESP")"
import json, sys
with open(sys.argv[1]) as f:
    sys.exit(0 if json.load(f).get("valid") is True else 1)
EOF

FAILED=0
log "all steps passed"
# cleanup (EXIT trap) stops everything and prints the summary line.
