#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server: scripts/with_postgres.sh CMD [ARGS...]
#
# Installs PostgreSQL with apt-get if initdb is missing (needs root), creates a cluster in a temp folder
# owned by the postgres user, starts it on 127.0.0.1 (a free port, unix socket in the temp folder too),
# exports DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:PORT/recsys, runs CMD as the calling user,
# then stops the server and deletes the folder, whatever CMD's exit status (which it returns).
# Example: scripts/with_postgres.sh .venv/bin/pytest -q tests/test_storage.py
# Not for: production (trust auth, fsync off, no persistence).
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
    done
    return 1
}

PG_BIN="$(find_bin || true)"
if [[ -z "$PG_BIN" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "PostgreSQL is not installed; run as root (apt-get install -y postgresql) or install it first" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
    PG_BIN="$(find_bin)"
fi

RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then
    RUN_AS=(runuser -u postgres --)  # the server refuses to run as root
fi

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TMP="$(mktemp -d -t with_postgres.XXXXXX)"
chmod 755 "$TMP"
[[ $(id -u) -eq 0 ]] && chown postgres "$TMP"

cleanup() {
    "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$TMP/data" -U postgres --auth=trust -E UTF8 >/dev/null
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c fsync=off -c max_connections=200" >/dev/null
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres recsys

export DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/recsys"
echo "with_postgres: $DATABASE_URL" >&2
set +e
"$@"
status=$?
set -e
exit $status
