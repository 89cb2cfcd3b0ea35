# Sourced by scripts/fault-*.sh: builds the server and the fault programs in
# $BUILD (default build-fault) and runs one of them against the real binary.
# Usage inside a script: fault_run PROGRAM DEFAULT_ARGS... -- "$@"
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build-fault}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac

fault_build() {
    if [ ! -f "$BUILD/build.ninja" ]; then
        meson setup "$BUILD" "$ROOT" ${MESON_ARGS:-} >/dev/null
    fi
    ninja -C "$BUILD" app/sohub-server "tests/fault/$1" >/dev/null
}

# fault_run PROG [default args ...] -- [user args ...]: the user's
# arguments replace the defaults when any are given.
fault_run() {
    prog=$1
    shift
    defaults=""
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        defaults="$defaults $1"
        shift
    done
    [ $# -gt 0 ] && shift
    fault_build "$prog"
    export SOHUB_SERVER="$BUILD/app/sohub-server"
    if [ $# -gt 0 ]; then
        exec "$BUILD/tests/fault/$prog" "$@"
    fi
    # shellcheck disable=SC2086
    exec "$BUILD/tests/fault/$prog" $defaults
}
