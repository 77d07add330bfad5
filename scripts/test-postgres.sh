#!/usr/bin/env bash
# Starts a private PostgreSQL for the store's tests and prints its URL as the last line of stdout:
#
#   export SWITCHBOARD_TEST_POSTGRES_URL="$(scripts/test-postgres.sh)"
#   cargo test --release -p switchboard-store
#
# Idempotent: installs PostgreSQL (apt-get) only if no server binaries are found, creates the
# cluster only once, starts it only if it is not running, and creates the role and database only
# if they are missing. Everything but the URL goes to stderr.
#
# The cluster listens on 127.0.0.1:55432 only (TCP with passwords; its Unix socket sits inside the
# data directory, which only the postgres user can enter). The role `switchboard` may create
# databases, so each test makes its own.
#
# The data lives in /var/tmp/switchboard-postgres, not under the repository's target/: the port is
# one per machine, so the cluster is too (a second checkout finds it running and reuses it);
# `cargo clean` must not delete the files of a running server; and the postgres user needs to
# traverse every parent directory, which /var/tmp allows without loosening the permissions of
# anyone's home or work directory. /var/tmp survives reboots, so the cluster's data does too.
set -euo pipefail

PORT=55432
BASE=/var/tmp/switchboard-postgres
DATA="$BASE/data"
LOG="$BASE/server.log"
URL="postgres://switchboard:switchboard@127.0.0.1:$PORT/switchboard"

say() { echo "test-postgres: $*" >&2; }

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user; otherwise as
# ourselves (a developer's own cluster).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

find_bin() {
    local initdb
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$initdb" ] && dirname "$initdb"
}

BIN=$(find_bin || true)
if [ -z "$BIN" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "PostgreSQL is not installed and we are not root: apt-get install postgresql"
        exit 1
    fi
    say "installing PostgreSQL (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    BIN=$(find_bin || true)
    if [ -z "$BIN" ]; then
        say "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb appeared"
        exit 1
    fi
fi

psql_admin() {
    # Through the Unix socket in the data directory, as the superuser (trusted there only).
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PORT" -U postgres -d postgres "$@"
}

if [ ! -s "$DATA/PG_VERSION" ]; then
    say "creating a cluster in $DATA"
    mkdir -p "$BASE"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$BASE"
    fi
    chmod 0700 "$BASE"
    rm -rf "$DATA"
    # C collation: byte order, the same on every machine, as the tests' ordering assumes.
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >&2
    cat >>"$DATA/postgresql.conf" <<CONF

# switchboard test cluster (scripts/test-postgres.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DATA'
max_connections = 200
# Faster commits for tests; unlike fsync = off, a crash loses recent commits but never the cluster.
synchronous_commit = off
CONF
fi

if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "already running on 127.0.0.1:$PORT"
else
    say "starting PostgreSQL on 127.0.0.1:$PORT (log: $LOG)"
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >&2
fi

if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_roles WHERE rolname = 'switchboard'")" ]; then
    say "creating role switchboard"
    psql_admin -c "CREATE ROLE switchboard LOGIN CREATEDB PASSWORD 'switchboard'"
fi
if [ -z "$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = 'switchboard'")" ]; then
    say "creating database switchboard"
    psql_admin -c "CREATE DATABASE switchboard OWNER switchboard"
fi

echo "$URL"
