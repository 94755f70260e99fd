#!/usr/bin/env bash
# Adds tidings' core services (PostgreSQL, Redis, gateway-ws) to an
# installed faasd, then deploys the functions. Run as root on the faasd
# host from the repository, with faas-cli logged in:
#   sudo -E infra/faasd/install.sh
# Running it again keeps the existing passwords and data.
set -euo pipefail
cd "$(dirname "$0")/../.."
FAASD=/var/lib/faasd
compose=$FAASD/docker-compose.yaml

# 1. The functions' secrets (faasd-provider stores them under
#    /var/lib/faasd-provider/secrets/openfaas-fn, where gateway-ws mounts
#    them from).
bash infra/openfaas/deploy.sh secrets

# 2. The core services. PostgreSQL creates the participants' databases
#    when it makes its data directory (create-databases.sql).
mkdir -p "$FAASD/tidings/postgres" "$FAASD/tidings/redis"
cp infra/compose/create-databases.sql "$FAASD/tidings/create-databases.sql"
[ -s "$FAASD/secrets/postgres-password" ] ||
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$FAASD/secrets/postgres-password"
pgpass=$(cat "$FAASD/secrets/postgres-password")
if ! grep -q '^  gateway-ws:' "$compose"; then
  cp "$compose" "$compose.before-tidings"
  sed -e "s/@POSTGRES_PASSWORD@/$pgpass/" \
      -e "s/@BASIC_AUTH_PASSWORD@/$(cat "$FAASD/secrets/basic-auth-password")/" \
      infra/faasd/docker-compose.tidings.yaml | grep -v '^#' >> "$compose"
  systemctl restart faasd
fi

# 3. The functions, with stack.yml's defaults pointing at the core
#    services: the directory and each participant's own database.
DATABASE_URL="postgres://postgres:$pgpass@postgres:5432/tidings?sslmode=disable" \
PERSIST_DATABASE_URL="postgres://postgres:$pgpass@postgres:5432/tidings_persist?sslmode=disable" \
COUNTER_DATABASE_URL="postgres://postgres:$pgpass@postgres:5432/tidings_counter?sslmode=disable" \
  bash infra/openfaas/deploy.sh deploy
