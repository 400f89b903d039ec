#!/usr/bin/env bash
# Render the systemd unit templates with this machine's paths and user, then check them.
#
#   PORTAL_DIR=/srv/portal PORTAL_USER=portal PORTAL_GROUP=portal \
#   PORTAL_ENV_FILE=/etc/portal/portal.env deploy/install-units.sh [DEST]
#
# DEST defaults to /etc/systemd/system. Every variable is required except PORTAL_GROUP (the
# user's name). `systemd-analyze verify` checks the rendered units where it is installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${PORTAL_DIR:?set PORTAL_DIR to the checkout (it holds .venv and manage.py)}"
: "${PORTAL_USER:?set PORTAL_USER to the account the services run as}"
: "${PORTAL_ENV_FILE:?set PORTAL_ENV_FILE to the environment file (deploy/portal.env.template)}"
PORTAL_GROUP="${PORTAL_GROUP:-$PORTAL_USER}"
dest="${1:-/etc/systemd/system}"
mkdir -p "$dest"
for template in "$here"/systemd/*; do
  sed -e "s|@PORTAL_DIR@|$PORTAL_DIR|g" -e "s|@PORTAL_USER@|$PORTAL_USER|g" \
      -e "s|@PORTAL_GROUP@|$PORTAL_GROUP|g" -e "s|@PORTAL_ENV_FILE@|$PORTAL_ENV_FILE|g" \
      "$template" > "$dest/$(basename "$template")"
done
if grep -l '@PORTAL_' "$dest"/portal*; then
  echo "a placeholder was left unreplaced in the files above" >&2
  exit 1
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify exits 0 on unknown keys and bad specifiers: any word from it is a failure.
  report="$(cd "$dest" && systemd-analyze verify --man=no ./portal*.service ./portal.target 2>&1)" \
    || { echo "$report" >&2; exit 1; }
  if [ -n "$report" ]; then echo "$report" >&2; exit 1; fi
  echo "systemd-analyze verify: the units are valid"
else
  echo "systemd-analyze is not installed here: the units were not verified"
fi
