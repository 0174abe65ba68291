#!/usr/bin/env bash
# The production-instance test (tests/test_postgres_instance.py) starts its own PostgreSQL
# server on 127.0.0.1 from Debian's `postgresql` package; install it when it is missing (root
# only). No cluster is created or started here: the test makes its own in a temp folder.
set -euo pipefail
find_bin() {
  command -v initdb 2>/dev/null && return 0
  ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 | grep . && return 0
  return 1
}
find_bin >/dev/null && { find_bin; exit 0; }
if [ "$(id -u)" -ne 0 ]; then
  echo "PostgreSQL (initdb, pg_ctl) is missing and this is not root: install Debian's 'postgresql' package" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's package would create and start a cluster on port 5432; nothing here needs one.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
find_bin
