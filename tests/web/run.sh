#!/bin/sh
# The web tests for meson (tests/web/meson.build):
#   run.sh browser   the sample pages in Chromium (*.browser.test.mjs)
#   run.sh node      web/lib in Node with the ws package (node.test.mjs)
# Installs what is missing first (npm ci when node_modules is missing or
# older than package-lock.json; chromium through scripts/install-deps.sh
# when this user may).  Exit 77 (skip) only when chromium is still not
# there after that, with the reason on stdout.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kind=${1:-browser}
chromium=${CHROMIUM:-/usr/bin/chromium}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "run.sh: node and npm are needed (scripts/install-deps.sh installs nodejs and npm)" >&2
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
    echo "run.sh: Node.js 20 or later is needed (playwright-core), found $(node --version)" >&2
    exit 1
fi
sh "$repo/scripts/install-deps.sh" --web-only || {
    echo "run.sh: npm ci in tests/web failed" >&2
    exit 1
}

case $kind in
browser)
    if [ ! -x "$chromium" ]; then
        if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
            echo "run.sh: $chromium is missing: installing the packages of scripts/packages.txt"
            sh "$repo/scripts/install-deps.sh" || true
        fi
    fi
    if [ ! -x "$chromium" ]; then
        echo "SKIP: $chromium is not installed and could not be installed here" \
             "(apt-get install chromium as root, or run scripts/install-deps.sh)"
        exit 77
    fi
    files=$(cd "$here" && ls *.browser.test.mjs)
    # cluster mode (SOHUB_E2E_CLUSTER, harness.mjs): the admin page shows
    # the server API of one node, which sees that node's clients only
    case ${SOHUB_E2E_CLUSTER:-0} in
    0) ;;
    *) files=$(echo "$files" | grep -v '^admin\.') ;;
    esac
    ;;
node)
    files=node.test.mjs
    ;;
*)
    echo "usage: run.sh browser|node" >&2
    exit 2
    ;;
esac
case ${SOHUB_E2E_CLUSTER:-0} in
0) ;;
*)
    for p in redis-server "${HAPROXY:-/usr/sbin/haproxy}"; do
        if ! command -v "$p" >/dev/null 2>&1; then
            echo "SKIP: cluster mode needs $p (Debian packages redis-server, haproxy)"
            exit 77
        fi
    done
    ;;
esac

cd "$here" || exit 1
# one file at a time: one Chromium and one server set at a time on 2 cores
# shellcheck disable=SC2086
exec node --test --test-concurrency=1 --test-reporter=tap $files
