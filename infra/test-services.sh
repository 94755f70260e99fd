#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis servers the tests use are up on
# loopback: starts them if installed, installs them with apt-get if not.
# Tests make their own databases and key prefixes on these servers.
set -euo pipefail

PGPORT=5432
REDISPORT=6379
ADMIN_URL=${TIDINGS_TEST_ADMIN_URL:-postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  echo "installing $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$what did not come up" >&2; return 1
}

# Node.js runs the tests with the official phoenix client; Debian's
# chromium is the browser of the web client's test (no browser is ever
# downloaded); Debian's prometheus scrapes the dev stack in a test.
missing=()
command -v npm >/dev/null || missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v psql >/dev/null || missing+=(postgresql-client)
# kubectl renders the Kubernetes manifests offline (infra/k8s's test).
command -v kubectl >/dev/null || missing+=(kubernetes-client)
# The partition tests put servers in a network namespace and drop its
# packets with iptables (this kernel has no netem).
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

redis_up() { redis-cli -h 127.0.0.1 -p $REDISPORT ping | grep -q PONG; }
if ! command -v redis-cli >/dev/null || ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port $REDISPORT --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi

pg_up() { pg_isready -q -h 127.0.0.1 -p $PGPORT; }
if ! command -v pg_isready >/dev/null || ! pg_up; then
  installed_now=no
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    installed_now=yes
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  if [ $installed_now = yes ]; then
    # The tests connect over TCP as postgres without a password.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' /etc/postgresql/$version/main/pg_hba.conf
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_up
fi

if ! psql "$ADMIN_URL" -qAtc 'select 1' >/dev/null; then
  echo "cannot connect to PostgreSQL as $ADMIN_URL; set TIDINGS_TEST_ADMIN_URL to a user that may create databases" >&2
  exit 1
fi
# Test databases a killed run left behind, and templates of old schemas.
for db in $(psql "$ADMIN_URL" -qAtc "select datname from pg_database where datname like 'tidings\_test\_%'"); do
  psql "$ADMIN_URL" -qc "drop database if exists $db with (force)" >/dev/null
done
echo "PostgreSQL and Redis are up"
