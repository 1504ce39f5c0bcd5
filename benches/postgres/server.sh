# Sourced by the Postgres benches: a private Postgres server, as the tests start it (`fsync=off`,
# trust auth on 127.0.0.1, a free port), stopped and removed with $work when the bench exits.
# Defines `as_pg`, `port` and `psql_`; needs $work.
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
pgdir=$(mktemp -d /tmp/slpgbench.XXXX)
chmod 755 "$pgdir"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres: "$pgdir"; runuser -u postgres -- "$@"; else "$@"; fi; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bindir/initdb" -D "$pgdir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
as_pg "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB -c max_wal_size=4GB" start >/dev/null
cleanup() { as_pg "$bindir/pg_ctl" -D "$pgdir/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$pgdir" "$work"; }
trap cleanup EXIT
psql_() { psql -X -q -At -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
