#!/usr/bin/env bash
# Usage: tests/postgres.sh COMMAND [ARGS...]
#
# Runs COMMAND against a throwaway PostgreSQL server: starts a fresh server in a
# new temporary directory, exports DATABASE_URL pointing at it, runs COMMAND,
# then stops the server and deletes the directory, whatever happens (success,
# failure, Ctrl-C, SIGTERM). Exits with COMMAND's status, or 130/143/129 when
# interrupted by SIGINT/SIGTERM/SIGHUP.
#
# The server listens only on a unix socket inside the temporary directory, so it
# never conflicts with another server or another run of this script.
#
# If DATABASE_URL is already set, no server is started: COMMAND just runs
# against that database.
#
# tests/postgres.sh --bindir prints the directory of the server binaries (after
# installing them, as below, when they are missing) and exits.
#
# Environment:
#   SCHEMATA_PG_ROOT  where versioned server binaries live when they are not on
#                     PATH (default: /usr/lib/postgresql, as on Debian/Ubuntu).
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

if [[ $1 != --bindir && -n ${DATABASE_URL:-} ]]; then
    exec "$@"
fi

say() { echo "postgres.sh: $*" >&2; }

pg_root=${SCHEMATA_PG_ROOT:-/usr/lib/postgresql}

# Prints the directory holding initdb, pg_ctl and postgres (and the matching
# createdb), or fails. PATH first, then the highest version under $pg_root.
find_bindir() {
    local dir initdb
    if initdb=$(command -v initdb); then
        # Resolve symlinks (e.g. /usr/local/bin/initdb) to the real bin dir,
        # where the matching pg_ctl, postgres and createdb live.
        dir=$(dirname -- "$(readlink -f -- "$initdb")")
        if [[ -x $dir/pg_ctl && -x $dir/postgres && -x $dir/createdb && -x $dir/psql ]]; then
            echo "$dir"
            return 0
        fi
    fi
    while read -r dir; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres && -x $dir/createdb &&
            -x $dir/psql ]]; then
            echo "$dir"
            return 0
        fi
    done < <(printf '%s\n' "$pg_root"/*/bin | sort -rV)
    return 1
}

if ! bindir=$(find_bindir); then
    if [[ $(id -u) -ne 0 ]]; then
        say "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH" \
            "or in $pg_root/*/bin."
        say "Install them, e.g. 'sudo apt-get install postgresql' on Debian/Ubuntu," \
            "or set DATABASE_URL to an existing server."
        exit 1
    fi
    say "PostgreSQL server binaries not found, installing them with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    if ! bindir=$(find_bindir); then
        say "PostgreSQL server binaries still not found after installing 'postgresql'"
        exit 1
    fi
fi

if [[ $1 == --bindir ]]; then
    echo "$bindir"
    exit 0
fi

# initdb and postgres refuse to run as root, so as root run the server as the
# unprivileged 'nobody' (always present, and needs no user to be created).
if [[ $(id -u) -eq 0 ]]; then
    pg_user=nobody
    as_pg() { (cd / && runuser -u "$pg_user" -- "$@"); }
else
    pg_user=$(id -un)
    as_pg() { "$@"; }
fi

# Percent-encodes $1 for use in a URL.
urlencode() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c" && out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

tmp=''
started=''
child=''
child_target=''
cleaned=''

# Runs exactly once, from the EXIT trap (the signal traps exit too).
# shellcheck disable=SC2317 # invoked from traps
cleanup() {
    [[ -z $cleaned ]] || return 0
    cleaned=1
    trap '' INT TERM HUP # a second Ctrl-C must not cut the cleanup short
    if [[ -n $started ]]; then
        if as_pg "$bindir/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 ||
            as_pg "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1; then
            say "stopped"
        else
            say "could not stop the server:"
            cat "$tmp/postgres.log" >&2 || true
        fi
    fi
    if [[ -n $tmp ]]; then
        rm -rf -- "$tmp"
    fi
}

# Passes the signal on to COMMAND's process group, gives it 10 seconds to
# finish, kills what is left, then exits (and so cleans up).
# shellcheck disable=SC2317 # invoked from traps
on_signal() {
    local sig=$1 status=$2 i
    trap '' INT TERM HUP
    if [[ -n $child ]]; then
        kill -s "$sig" -- "$child_target" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$child" 2>/dev/null || break
            sleep 0.1
        done
        kill -s KILL -- "$child_target" 2>/dev/null || true
    fi
    exit "$status"
}

trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# A short path: the socket path must fit in ~107 bytes.
tmp=$(mktemp -d /tmp/schemata-pg.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then
    chown "$pg_user:" "$tmp"
fi

if ! as_pg "$bindir/initdb" -D "$tmp/data" -A trust -U postgres -N \
    --no-locale -E UTF8 >"$tmp/initdb.log" 2>&1; then
    cat "$tmp/initdb.log" >&2
    say "initdb failed"
    exit 1
fi

# No TCP (listen_addresses=''), socket in $tmp; durability off for speed.
started=1
if ! as_pg "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w -t 60 -s \
    -p "$bindir/postgres" \
    -o "-c listen_addresses='' -c unix_socket_directories='$tmp'" \
    -o "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    -o "-c max_connections=200" \
    start >&2; then
    cat "$tmp/postgres.log" >&2 || true
    say "could not start the server"
    exit 1
fi

as_pg "$bindir/createdb" -h "$tmp" -U postgres -O postgres schemata

# django-environ's form for a unix socket: the socket directory, percent-encoded,
# as the first path segment (it becomes HOST, the last segment NAME).
DATABASE_URL="postgres://postgres@/$(urlencode "$tmp")/schemata"
export DATABASE_URL

say "started PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $tmp"

# COMMAND runs in the background so that the traps above run as soon as a
# signal arrives. In its own session (setsid) it forms a process group that the
# traps can signal as a whole, and terminal signals reach it only through them.
# Background commands ignore SIGINT and read /dev/null unless told otherwise,
# hence the 'trap - INT QUIT' and '<&0'.
if command -v setsid >/dev/null; then
    (trap - INT QUIT && exec setsid "$@") <&0 &
    child=$!
    child_target=-$child
else
    (trap - INT QUIT && exec "$@") <&0 &
    child=$!
    child_target=$child
fi

status=0
wait "$child" || status=$?
child=''
exit "$status"
