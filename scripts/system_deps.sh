#!/usr/bin/env bash
# The system programs the tests drive for real: installed with apt-get when missing and root;
# otherwise the one command to run is printed, and under CI=true that is a failure (outside CI
# the tests that need them skip with a reason). Silent when nothing is missing.
set -euo pipefail

# Debian's postgresql-15 keeps initdb and pg_ctl off PATH; the Makefile adds this directory.
PG_BIN=/usr/lib/postgresql/15/bin
export PATH="$PATH:$PG_BIN"

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
{ command -v initdb && command -v pg_ctl; } >/dev/null 2>&1 || need+=(postgresql-15)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  exit 0
fi

echo "system-deps: missing ${need[*]}; install with:" >&2
echo "  sudo apt-get install -y ${need[*]}" >&2
if [ "${CI:-}" = "true" ]; then
  echo "system-deps: CI=true requires every test, so this is a failure" >&2
  exit 1
fi
echo "system-deps: continuing; the tests that need them will skip with a reason" >&2
