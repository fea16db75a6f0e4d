# shellcheck shell=bash
# Sourced by demo/run: a PostgreSQL server for the demo, with a persistent data directory.
#
#   pg_start DATADIR DBNAME  starts the server on DATADIR (initdb and createdb the first
#                            time) and exports DATABASE_URL for DBNAME. If a server is
#                            already running on DATADIR it is used and left running.
#   pg_stop                  stops the server, if pg_start started it.
#
# The server listens on a unix socket only (no TCP), in DATADIR itself when its path is
# short enough, else in /tmp/schemata-demo-<uid>-<hash>. As root it runs as the owner of
# DATADIR or, for a new one, as 'nobody' (initdb and postgres refuse to run as root); when
# that user cannot reach DATADIR (a clone under /root), the data goes to /var/tmp instead.
# Binaries: found (and, as root, installed when missing) by tests/postgres.sh --bindir.

pg_here=$(dirname -- "${BASH_SOURCE[0]}")
pg_bindir=''
pg_datadir=''
pg_user=''
pg_started=''

pg_say() { echo "demo/postgres: $*" >&2; }

# As root, the user to run the server as: the owner of DATADIR ($1), or 'nobody' for a new one.
pg_owner() {
    local owner
    owner=$(stat -c %U -- "$1")
    if [[ $owner == root ]]; then
        owner=nobody
    fi
    echo "$owner"
}

# Runs a command as the server's user, from / (its user may not reach the current directory).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u "$pg_user" -- "$@")
    else
        "$@"
    fi
}

# Percent-encodes $1 for use in a URL.
pg_urlencode() {
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

pg_start() {
    local datadir=$1 dbname=$2 sockdir exists log
    # Found (or installed, as root) the way the test command finds them.
    pg_bindir=$(bash "$pg_here/../tests/postgres.sh" --bindir) || return 1

    mkdir -p -- "$datadir"
    datadir=$(cd -- "$datadir" && pwd)
    pg_user=$(id -un)
    if [[ $(id -u) -eq 0 ]]; then
        pg_user=$(pg_owner "$datadir")
        if ! runuser -u "$pg_user" -- test -x "$(dirname -- "$datadir")"; then
            # E.g. a clone under /root, which no other user may enter.
            rmdir -- "$datadir" 2>/dev/null || true
            datadir=/var/tmp/schemata-demo-$(printf '%s' "$datadir" | cksum | cut -d' ' -f1)
            pg_say "$pg_user cannot enter the directories above demo/: using $datadir instead"
            mkdir -p -- "$datadir"
            pg_user=$(pg_owner "$datadir")
        fi
        chown -- "$pg_user:" "$datadir"
    fi
    pg_datadir=$datadir

    # A unix socket path holds at most 107 bytes.
    sockdir=$datadir
    if ((${#sockdir} > 90)); then
        sockdir=/tmp/schemata-demo-$(id -u)-$(printf '%s' "$datadir" | cksum | cut -d' ' -f1)
        mkdir -p -- "$sockdir"
        chmod 700 -- "$sockdir"
        [[ $(id -u) -ne 0 ]] || chown -- "$pg_user:" "$sockdir"
    fi

    if as_pg "$pg_bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        pg_say "using the PostgreSQL server already running on $datadir (left running)"
    else
        if [[ ! -f $datadir/PG_VERSION ]]; then
            pg_say "creating a database cluster in $datadir"
            find "$datadir" -mindepth 1 -delete # what an interrupted initdb left
            if ! log=$(as_pg "$pg_bindir/initdb" -D "$datadir" -A trust -U postgres \
                --no-locale -E UTF8 2>&1); then
                printf '%s\n' "$log" >&2
                pg_say "initdb failed"
                return 1
            fi
        fi
        # No TCP; commits do not wait for the disk (a crash may lose the last ones).
        pg_started=1
        if ! as_pg "$pg_bindir/pg_ctl" -D "$datadir" -l "$datadir/postgres.log" -w -t 60 -s \
            -o "-c listen_addresses='' -c unix_socket_directories='$sockdir'" \
            -o "-c synchronous_commit=off" start >&2; then
            tail -n 20 -- "$datadir/postgres.log" >&2 || true
            pg_say "could not start PostgreSQL"
            return 1
        fi
        pg_say "started PostgreSQL $("$pg_bindir/postgres" --version | awk '{print $3}')" \
            "on $datadir"
    fi

    exists=$("$pg_bindir/psql" -X -h "$sockdir" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = '$dbname'") || return 1
    if [[ -z $exists ]]; then
        "$pg_bindir/psql" -X -h "$sockdir" -U postgres -d postgres -qc \
            "CREATE DATABASE \"$dbname\"" || return 1
    fi
    # django-environ's form for a unix socket: the socket directory, percent-encoded.
    DATABASE_URL="postgres://postgres@/$(pg_urlencode "$sockdir")/$dbname"
    export DATABASE_URL
}

pg_stop() {
    [[ -n $pg_started ]] || return 0
    pg_started=''
    if as_pg "$pg_bindir/pg_ctl" -D "$pg_datadir" -m fast -w -s stop >/dev/null 2>&1 ||
        as_pg "$pg_bindir/pg_ctl" -D "$pg_datadir" -m immediate -w -s stop >/dev/null 2>&1; then
        pg_say "stopped PostgreSQL"
    else
        pg_say "could not stop PostgreSQL; see $pg_datadir/postgres.log"
    fi
}
