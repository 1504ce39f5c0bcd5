#!/usr/bin/env bash
# Installs the servers the tests start themselves: Postgres 15 (Debian's postgresql-15; the tests
# run initdb and pg_ctl as the `postgres` user on a private port) and Redis (Debian's
# redis-server). Debian's packages would start system-wide services on install: a policy-rc.d
# that refuses service starts keeps them stopped. Idempotent; needs root and apt-get when
# anything is missing.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql-15 postgresql-client-15)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${#need[@]}" = 0 ]; then
  echo "setup: Postgres ($(ls -d /usr/lib/postgresql/*/bin | head -1)) and redis-server present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup: missing ${need[*]}: install them (Debian: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "setup: installing ${need[*]} (services stay stopped)"
policy=/usr/sbin/policy-rc.d
had_policy=false
[ -e "$policy" ] && had_policy=true
if ! $had_policy; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
$had_policy || rm -f "$policy"
id postgres >/dev/null
ls /usr/lib/postgresql/*/bin/initdb >/dev/null
