#!/usr/bin/env bash
# Deploys tidings' functions to OpenFaaS (faasd or faas-netes) with
# faas-cli, after creating every secret they use (the list is
# infra/openfaas/secrets). Run from anywhere, logged in with faas-cli:
#
#   infra/openfaas/deploy.sh              secrets, then faas-cli deploy -f stack.yml
#   infra/openfaas/deploy.sh secrets      only create the missing secrets
#   infra/openfaas/deploy.sh files DIR    only write the missing secret files to DIR
#   infra/openfaas/deploy.sh names        print the secret names
#
# A secret's value comes from its environment fallback (JWT_SECRET,
# INTERNAL_KEY, SMTP_PASSWORD, ADMIN_KEY) or is generated; either way it is
# kept in $TIDINGS_SECRETS (default .deploy/secrets, mode 0600) so the
# operator can read the admin key back, and an existing secret is never
# overwritten. Extra arguments after `deploy` go to faas-cli.
set -euo pipefail
cd "$(dirname "$0")/../.."

names() { grep -Ev '^[[:space:]]*(#|$)' infra/openfaas/secrets; }

# env_name mirrors lib/config.SecretEnv: tidings-jwt-secret -> JWT_SECRET.
env_name() { local n=${1#tidings-}; n=${n//-/_}; echo "${n^^}"; }

files() {
  local dir=$1
  mkdir -p "$dir"
  chmod 700 "$dir"
  for s in $(names); do
    [ -s "$dir/$s" ] && continue
    local from_env
    from_env=$(env_name "$s")
    if [ -n "${!from_env:-}" ]; then
      printf '%s' "${!from_env}" > "$dir/$s"
    else
      head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/$s"
    fi
    chmod 600 "$dir/$s"
  done
}

secrets() {
  local dir=${TIDINGS_SECRETS:-.deploy/secrets}
  files "$dir"
  local existing
  existing=$(faas-cli secret list)
  for s in $(names); do
    if grep -qw -- "$s" <<<"$existing"; then
      echo "secret $s exists, kept"
    else
      faas-cli secret create "$s" --from-file "$dir/$s"
    fi
  done
}

case "${1:-deploy}" in
  names) names ;;
  files) files "${2:?usage: deploy.sh files DIR}" ;;
  secrets) secrets ;;
  deploy) shift || true; secrets; faas-cli deploy -f stack.yml "$@" ;;
  *) echo "usage: $0 [deploy|secrets|files DIR|names]" >&2; exit 2 ;;
esac
