#!/usr/bin/env bash
# Local PostgreSQL cluster for developing and testing keyward.
#
# Usage: scripts/dev-db.sh start|stop|status|url|psql [psql args...]
#
#   start   Create the cluster on first use (initdb, superuser "keyward", trust
#           auth), start it if it is not running, wait until it accepts
#           connections and create the "keyward" database if missing.
#           Running it again reuses the running cluster.
#   stop    Stop the cluster (no-op when it is not running).
#   status  Print where the cluster lives and whether it runs; exits 0 when
#           running, 3 when stopped.
#   url     Print the URL of the owner role "keyward" (a superuser: migrations, tests).
#   server-url
#           Print the URL of the server role "keyward_server", which `make run`
#           serves as (the two-role setup, docs/audit.md): it may only read and
#           append to the audit trail.
#   psql    Open psql on the keyward database (extra args go to psql).
#
# Environment:
#   KEYWARD_DEV_PG_PORT  TCP port, default 54329. The cluster listens on
#                        127.0.0.1 only.
#   KEYWARD_PG_BIN       PostgreSQL bin dir to use (default: found via PATH,
#                        else the highest /usr/lib/postgresql/*/bin).
#
# Files: everything lives in the repository's ignored .data/ directory:
# .data/pg (data dir), .data/pg-run (unix socket dir), .data/pg.log (server log).
#
# PostgreSQL refuses to run as root. When this script runs as root, the server
# runs as the "postgres" system user (created if missing) and .data/pg is owned
# by it. If that user cannot reach .data/ (e.g. the checkout is under a 0700
# home directory) or the socket path would exceed the unix socket path limit,
# the affected files go to /tmp/keyward-dev-pg.<uid>.<hash of repo path>
# instead, and .data/pg.log is a symlink to the real log.
#
# This is a throwaway development cluster: fsync is off for speed. Never put
# data you care about in it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${KEYWARD_DEV_PG_PORT:-54329}"
DB_USER=keyward
DB_NAME=keyward
HOST=127.0.0.1

# Connection settings from the caller's environment must not leak into ours.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGPASSWORD PGSSLMODE PGOPTIONS PGDATA

die() { echo "dev-db: error: $*" >&2; exit 1; }
say() { echo "dev-db: $*" >&2; }

case "$PORT" in
  '' | *[!0-9]*) die "KEYWARD_DEV_PG_PORT must be a port number, got '$PORT'" ;;
esac
{ [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ]; } || die "KEYWARD_DEV_PG_PORT out of range: $PORT"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------
STATE="$ROOT/.data"
PGDATA_DIR="$STATE/pg"
SOCK_DIR="$STATE/pg-run"
LOG="$STATE/pg.log"
LOG_LINK=""   # set when the real log is elsewhere: .data/pg.log links to it
ALT="/tmp/keyward-dev-pg.$(id -u).$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"

SERVER_USER=keyward_server

url() { echo "postgres://$DB_USER@$HOST:$PORT/$DB_NAME"; }
server_url() { echo "postgres://$SERVER_USER@$HOST:$PORT/$DB_NAME"; }

# Run a command as the OS user that owns the cluster. From / so that an
# unreadable current directory does not bother the PostgreSQL tools.
as_pg() {
  if [ "$IS_ROOT" -eq 1 ]; then
    if command -v runuser >/dev/null 2>&1; then
      (cd / && runuser -u postgres -- "$@")
    else
      local cmd
      cmd="$(printf '%q ' "$@")"
      (cd / && su postgres -s /bin/bash -c "$cmd")
    fi
  else
    (cd / && "$@")
  fi
}

ensure_pg_user() {
  [ "$IS_ROOT" -eq 1 ] || return 0
  id -u postgres >/dev/null 2>&1 && return 0
  say "creating system user 'postgres' to run the server (PostgreSQL refuses to run as root)"
  useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
    --shell /bin/bash postgres || die "could not create the 'postgres' user"
}

# mkdir -p, owned by the cluster's OS user, mode 0700.
make_private_dir() {
  mkdir -p "$1"
  [ "$IS_ROOT" -eq 1 ] && chown postgres: "$1"
  chmod 0700 "$1"
}

# Decide where data, socket and log live (see the header). Creates the dirs.
prepare_dirs() {
  mkdir -p "$STATE"
  if [ "$IS_ROOT" -eq 1 ]; then
    chmod 0755 "$STATE"
    if ! as_pg test -x "$STATE" -a -r "$STATE"; then
      if [ -d "$PGDATA_DIR" ] && [ ! -L "$PGDATA_DIR" ]; then
        say "warning: user postgres cannot reach $STATE; using $ALT"
      fi
      PGDATA_DIR="$ALT/pg"
      SOCK_DIR="$ALT/run"
      LOG_LINK="$LOG"
      LOG="$ALT/pg.log"
    fi
  fi
  # Unix socket paths are limited to ~107 bytes.
  local sock_path="$SOCK_DIR/.s.PGSQL.$PORT"
  if [ "${#sock_path}" -gt 100 ]; then
    SOCK_DIR="$ALT/run"
  fi
  case "$PGDATA_DIR" in "$ALT"/*) make_private_dir "$ALT" ;; esac
  case "$SOCK_DIR" in "$ALT"/*) make_private_dir "$ALT" ;; esac
  make_private_dir "$PGDATA_DIR"
  make_private_dir "$SOCK_DIR"
  # The server (running as postgres when we are root) appends to the log.
  touch "$LOG"
  [ "$IS_ROOT" -eq 1 ] && chown postgres: "$LOG"
  if [ -n "$LOG_LINK" ]; then
    ln -sfn "$LOG" "$LOG_LINK"
  fi
  return 0
}

# Read-only variant for stop/status: same decision, no side effects.
locate_dirs() {
  if [ "$IS_ROOT" -eq 1 ] && id -u postgres >/dev/null 2>&1 && [ -d "$STATE" ] \
    && ! as_pg test -x "$STATE" -a -r "$STATE"; then
    PGDATA_DIR="$ALT/pg"
    SOCK_DIR="$ALT/run"
    LOG_LINK="$LOG"
    LOG="$ALT/pg.log"
  fi
  local sock_path="$SOCK_DIR/.s.PGSQL.$PORT"
  [ "${#sock_path}" -gt 100 ] && SOCK_DIR="$ALT/run"
  return 0
}

# ---------------------------------------------------------------------------
# PostgreSQL binaries
# ---------------------------------------------------------------------------
PG_BIN=""

has_server_tools() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

find_pg_bin() {
  local want="" d
  # An existing cluster must be run by its own major version.
  if [ -s "$PGDATA_DIR/PG_VERSION" ]; then
    want="$(cat "$PGDATA_DIR/PG_VERSION")"
  fi
  if [ -n "${KEYWARD_PG_BIN:-}" ]; then
    has_server_tools "$KEYWARD_PG_BIN" || die "KEYWARD_PG_BIN=$KEYWARD_PG_BIN has no initdb/pg_ctl/postgres"
    PG_BIN="$KEYWARD_PG_BIN"
  elif [ -n "$want" ] && has_server_tools "/usr/lib/postgresql/$want/bin"; then
    PG_BIN="/usr/lib/postgresql/$want/bin"
  elif command -v initdb >/dev/null 2>&1 \
    && d="$(dirname "$(readlink -f "$(command -v initdb)")")" && has_server_tools "$d"; then
    PG_BIN="$d"
  else
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -n -r); do
      if has_server_tools "$d"; then PG_BIN="$d"; break; fi
    done
  fi
  if [ -z "$PG_BIN" ]; then
    die "no PostgreSQL server binaries found (initdb, pg_ctl, postgres): not on PATH nor in /usr/lib/postgresql/*/bin.
  Install them, e.g. on Debian/Ubuntu: apt-get update && apt-get install -y postgresql
  or point KEYWARD_PG_BIN at the bin directory."
  fi
  if [ -n "$want" ]; then
    local have
    have="$("$PG_BIN/pg_ctl" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
    if [ "$have" != "$want" ]; then
      die "the cluster in $PGDATA_DIR was created by PostgreSQL $want but only $have was found ($PG_BIN).
  Install PostgreSQL $want, or remove the cluster (scripts/dev-db.sh stop; rm -rf $PGDATA_DIR) to recreate it."
    fi
  fi
}

# Client tools (psql, createdb, pg_isready) may live elsewhere than the server
# tools, e.g. Debian's /usr/bin wrappers.
client() {
  local tool="$1"
  shift
  if [ -x "$PG_BIN/$tool" ]; then
    "$PG_BIN/$tool" "$@"
  else
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
    "$tool" "$@"
  fi
}

# ---------------------------------------------------------------------------
# Cluster state
# ---------------------------------------------------------------------------
is_initialized() { [ -s "$PGDATA_DIR/PG_VERSION" ]; }

is_running() {
  is_initialized || return 1
  [ -f "$PGDATA_DIR/postmaster.pid" ] || return 1
  as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

# Port of the running server, from line 4 of postmaster.pid.
running_port() { sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true; }

init_cluster() {
  say "initializing a new cluster in $PGDATA_DIR ($("$PG_BIN/initdb" --version))"
  if ! as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" --username="$DB_USER" --auth=trust \
    --encoding=UTF8 --no-locale --no-sync >"$LOG.initdb" 2>&1; then
    cat "$LOG.initdb" >&2
    die "initdb failed (output above)"
  fi
  rm -f "$LOG.initdb"
  # Per-start settings (port, socket dir) go to keyward-dev.conf, rewritten at
  # every start; static dev settings are appended here once.
  as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null <<'EOF'

# --- keyward dev cluster (scripts/dev-db.sh) ---
# Throwaway dev/test data: trade durability for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
# #[sqlx::test] creates a database per test and runs tests in parallel.
max_connections = 200
log_line_prefix = '%m [%p] '
include_if_exists = 'keyward-dev.conf'
EOF
}

write_runtime_conf() {
  # Single quotes in paths would break the quoting below; refuse them.
  case "$SOCK_DIR" in *"'"*) die "socket dir path contains a quote: $SOCK_DIR" ;; esac
  as_pg tee "$PGDATA_DIR/keyward-dev.conf" >/dev/null <<EOF
# Written by scripts/dev-db.sh at every start; do not edit.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCK_DIR'
EOF
}

wait_ready() {
  for _ in $(seq 1 60); do
    if client pg_isready -q -h "$HOST" -p "$PORT" -U "$DB_USER" -d postgres; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$LOG" >&2 || true
  die "server did not accept connections on $HOST:$PORT within 30s (log above: $LOG)"
}

ensure_database() {
  local exists
  exists="$(client psql -X -q -h "$HOST" -p "$PORT" -U "$DB_USER" -d postgres -tAc \
    "select 1 from pg_database where datname = '$DB_NAME'")"
  if [ "$exists" != "1" ]; then
    client createdb -h "$HOST" -p "$PORT" -U "$DB_USER" "$DB_NAME"
    say "created database $DB_NAME"
  fi
  # The server role of the two-role setup; keyward grants it its privileges when it migrates.
  client psql -X -q -h "$HOST" -p "$PORT" -U "$DB_USER" -d postgres -v ON_ERROR_STOP=1 -c \
    "DO \$\$ BEGIN CREATE ROLE $SERVER_USER LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
}

# Serialize concurrent start/stop of the same cluster. The lock fd is closed
# for the server process so that it does not keep holding the lock.
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$STATE/.dev-db.lock"
  flock -w 120 9 || die "timed out waiting for another scripts/dev-db.sh"
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
cmd_start() {
  ensure_pg_user
  prepare_dirs
  take_lock
  find_pg_bin
  is_initialized || init_cluster

  if is_running; then
    local rp
    rp="$(running_port)"
    if [ -n "$rp" ] && [ "$rp" != "$PORT" ]; then
      die "the cluster in $PGDATA_DIR is already running on port $rp, not $PORT.
  Use KEYWARD_DEV_PG_PORT=$rp, or stop it first: scripts/dev-db.sh stop"
    fi
    say "reusing the running cluster on $HOST:$PORT (data: $PGDATA_DIR)"
  else
    write_runtime_conf
    say "starting PostgreSQL on $HOST:$PORT (data: $PGDATA_DIR, log: $LOG)"
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$LOG" -w -t 60 >/dev/null 9>&-; then
      echo "---- last lines of $LOG ----" >&2
      tail -n 30 "$LOG" >&2 || true
      die "PostgreSQL failed to start (is port $PORT in use? set KEYWARD_DEV_PG_PORT)"
    fi
  fi
  wait_ready
  ensure_database
  say "ready: $(url)"
}

cmd_stop() {
  locate_dirs
  if ! is_initialized; then
    say "no cluster in $PGDATA_DIR; nothing to stop"
    return 0
  fi
  [ -d "$STATE" ] && take_lock
  find_pg_bin
  if is_running; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 >/dev/null
    say "stopped (data kept in $PGDATA_DIR)"
  else
    say "not running"
  fi
}

cmd_status() {
  locate_dirs
  echo "data dir:  $PGDATA_DIR"
  echo "socket:    $SOCK_DIR"
  echo "log:       $LOG"
  if ! is_initialized; then
    echo "state:     not initialized (run: scripts/dev-db.sh start)"
    return 3
  fi
  find_pg_bin
  echo "binaries:  $PG_BIN ($("$PG_BIN/pg_ctl" --version))"
  if is_running; then
    local rp
    rp="$(running_port)"
    echo "state:     running (pid $(head -n 1 "$PGDATA_DIR/postmaster.pid"), port ${rp:-?})"
    [ -n "$rp" ] && PORT="$rp"
    echo "url:       $(url)"
    return 0
  fi
  echo "state:     stopped"
  return 3
}

cmd_psql() {
  locate_dirs
  PG_BIN=""
  if is_initialized; then find_pg_bin; fi
  if [ -n "$PG_BIN" ]; then
    client psql -h "$HOST" -p "$PORT" -U "$DB_USER" -d "$DB_NAME" "$@"
  else
    command -v psql >/dev/null 2>&1 || die "psql not found"
    psql -h "$HOST" -p "$PORT" -U "$DB_USER" -d "$DB_NAME" "$@"
  fi
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) url ;;
  server-url) server_url ;;
  psql) cmd_psql "$@" ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
