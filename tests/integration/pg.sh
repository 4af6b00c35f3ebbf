# tests/integration/pg.sh - sourced: a throwaway PostgreSQL 15 server.
#
# Debian's postgresql-15 binaries (initdb, pg_ctl) run a cluster in a
# temporary directory of its own, listening only on a Unix socket there
# (listen_addresses is empty: no TCP port to collide with), trust
# authentication for that socket, fsync off (a test cluster is thrown
# away; PG_FSYNC=on keeps PostgreSQL's durability, as `make bench` does). PostgreSQL refuses to run as root, so as root the cluster belongs
# to the `postgres` user (the package creates it) and runs through runuser.
#
#   pg_available        true when the server binaries are installed
#   pg_start            start a cluster; exports PG_DIR (its directory, also
#                       the socket directory), PG_PORT and HSMESH_TEST_PG, a
#                       libpq URI of its database "hsmesh" (created)
#   pg_uri DB           the URI of database DB of the running cluster
#   pg_createdb DB      create database DB
#   pg_psql DB SQL      run SQL in DB (psql, quiet, stops on the first error)
#   pg_stop_server      stop the server (pg_ctl -m fast), keep the cluster
#   pg_restart_server   start the stopped cluster again on the same socket
#   pg_stop             stop it and remove its directory
#   pg_run CMD...       all of it around one command
#   pg_run_each CMD...  one server for several commands (no arguments each),
#                       all run; fails when any of them (or the server) failed
#   pg_ca NAME          (an integration script, lib.sh sourced first) a server,
#                       its database "ca" (DBURI) and a CA NAME (ca_setup)
#                       whose ledger is there, listening on port 0,
#                       initialised: Y its ca.yaml, ROOT its root.pem
#   psql_ca SQL         run SQL in that database, unaligned tuples only
#
# Every command is bounded in time (pg_ctl -w -t); the caller's trap must
# call pg_stop (pg_run does).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=""
PG_PORT=5432

pg_available() {
	[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ] &&
	    command -v psql >/dev/null 2>&1
}

# _pg_as CMD...: run CMD as the cluster's owner
_pg_as() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_uri() {
	echo "postgresql://${PG_USER}@/$1?host=$PG_DIR&port=$PG_PORT&connect_timeout=5"
}

pg_psql() {
	psql -X -q -v ON_ERROR_STOP=1 -d "$(pg_uri "$1")" -c "$2"
}

pg_createdb() {
	pg_psql postgres "CREATE DATABASE \"$1\"" >/dev/null
}

pg_start() {
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || { echo "pg_start: running as root and no 'postgres' user" >&2; return 1; }
		PG_USER=postgres
	else
		PG_USER=$(id -un)
	fi
	PG_DIR=$(mktemp -d /tmp/hsmesh-pg.XXXXXX) || return 1
	if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR" || return 1; fi
	chmod 0700 "$PG_DIR"
	_pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=trust -E UTF8 \
	    --locale=C.UTF-8 --no-sync >"$PG_DIR/initdb.log" 2>&1 ||
	    { echo "pg_start: initdb failed: $(tail -n 2 "$PG_DIR/initdb.log" | tr '\n' ' ')" >&2; return 1; }
	cat >>"$PG_DIR/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$PG_DIR'
port = $PG_PORT
fsync = ${PG_FSYNC:-off}
synchronous_commit = ${PG_FSYNC:-off}
full_page_writes = ${PG_FSYNC:-off}
shared_buffers = 16MB
max_connections = 60
log_min_messages = warning
EOF
	pg_restart_server || return 1
	export PG_DIR PG_PORT PG_USER
	pg_createdb hsmesh || return 1
	HSMESH_TEST_PG=$(pg_uri hsmesh)
	export HSMESH_TEST_PG
}

pg_restart_server() {
	_pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 start >/dev/null ||
	    { echo "pg_start: the server did not start: $(tail -n 2 "$PG_DIR/server.log" | tr '\n' ' ')" >&2; return 1; }
}

pg_stop_server() {
	[ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ] &&
	    _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1
	return 0
}

pg_stop() {
	[ -n "$PG_DIR" ] || return 0
	if ! pg_stop_server || [ -f "$PG_DIR/data/postmaster.pid" ]; then
		_pg_pid=$(head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null)
		[ -n "$_pg_pid" ] && kill -9 "$_pg_pid" 2>/dev/null
	fi
	rm -rf "$PG_DIR"
	PG_DIR=""
}

pg_run() {
	trap 'pg_stop' EXIT INT TERM
	pg_start || return 1
	"$@"
}

pg_run_each() {
	trap 'pg_stop' EXIT INT TERM
	pg_start || return 1
	_pg_rc=0
	for _pg_c in "$@"; do "$_pg_c" || _pg_rc=1; done
	return $_pg_rc
}

pg_ca() {
	check "a throwaway PostgreSQL server starts" pg_start || return 1
	pg_createdb ca || return 1
	DBURI=$(pg_uri ca)
	ca_setup "$1" ec-p256
	Y=$T/$1.yaml
	ROOT=$T/$1/root.pem
	yaml_set "$Y" listen 127.0.0.1:0
	sed -i '/^database:/d' "$Y"
	echo "database: \"$DBURI\"" >>"$Y"
	quiet "$HSMESH" ca init -c "$Y" || { not_ok "ca init on PostgreSQL"; return 1; }
}

psql_ca() {
	psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DBURI" -c "$1"
}
