#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for tests and local runs.
#   scripts/postgres.sh start DIR PORT   - initdb (once) and start; creates role mlpipe and databases airflow, mlmd
#   scripts/postgres.sh stop DIR
# PostgreSQL refuses to run as root, so as root the cluster runs as the Debian 'postgres' user.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data directory}
port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed: run 'make system' (Debian package postgresql)." >&2
  exit 1
fi
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir" -A trust -U postgres >/dev/null
    fi
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    psql_() { as_pg psql -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
    psql_ -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='mlpipe') THEN CREATE ROLE mlpipe LOGIN PASSWORD 'mlpipe'; END IF; END\$\$;"
    for db in airflow mlmd; do
      if [ -z "$(psql_ -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
        psql_ -c "CREATE DATABASE $db OWNER mlpipe"
      fi
    done
    echo "postgresql://mlpipe:mlpipe@127.0.0.1:$port"
    ;;
  stop)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *)
    echo "usage: $0 start|stop DIR [PORT]" >&2
    exit 2
    ;;
esac
