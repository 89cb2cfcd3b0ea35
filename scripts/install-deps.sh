#!/bin/sh
# Installs whatever packages from scripts/packages.txt are missing, then
# the npm packages of tests/web (npm ci) when node_modules is missing or
# older than tests/web/package-lock.json.
# Uses apt-get directly as root, through sudo otherwise.
#   install-deps.sh             both
#   install-deps.sh --web-only  only the npm step (tests/web/run.sh)
set -eu
here=$(dirname "$0")

# Installed, or provided by an installed package (a nodejs package built
# with npm inside provides npm, and installing Debian's npm would fight it).
installed() {
    if dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; then
        return 0
    fi
    dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null | grep '^install ok installed|' |
        cut -d'|' -f2 | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -qx "$1"
}

apt_deps() {
    missing=""
    for p in $(grep -v '^#' "$here/packages.txt"); do
        installed "$p" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "install-deps: installing$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

web_deps() {
    web="$here/../tests/web"
    [ -f "$web/package-lock.json" ] || return 0
    stamp="$web/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ ! "$web/package-lock.json" -nt "$stamp" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-deps: npm not found (package npm or nodejs)" >&2
        return 1
    fi
    echo "install-deps: npm ci in tests/web"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
}

[ "${1:-}" = "--web-only" ] || apt_deps
web_deps
