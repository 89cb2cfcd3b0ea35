#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...] - run the libFuzzer targets of fuzz/.
#
# Builds the fuzz build directory if needed (clang, address + undefined
# sanitizers, libraries instrumented for coverage), then runs each target
# (default: every fuzz/fuzz_*.c) for SECONDS (default 60) on a fresh copy
# of its seed corpus fuzz/corpus/<target>/ plus the stored reproducers
# tests/data/fuzz-regress/<target>/, with the dictionary fuzz/<target>.dict and
# the libFuzzer flags of fuzz/<target>.options (one a line) when they exist.
# One fuzzer at a time, in-process (no -jobs).
#
# Prints the executions of every target (libFuzzer's final
# stat::number_of_executed_units) and exits non-zero when any target
# crashed, leaked, timed out, ran out of memory or printed a sanitizer
# report; the input that did it is kept (path printed).  Uses no network.
#
# Environment: FUZZ_BUILD (build dir, default build-fuzz), FUZZ_OUT (where
# runs go, default $FUZZ_BUILD/fuzz-runs), FUZZ_TIMEOUT (seconds one input
# may take, default 10), FUZZ_RSS_MB (default 2048), FUZZ_ARGS (extra
# libFuzzer flags).  CI calls `scripts/fuzz.sh 40`.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${1:-60}
shift || true
case "$secs" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

build=${FUZZ_BUILD:-build-fuzz}
out=${FUZZ_OUT:-$build/fuzz-runs}
per_input=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_*.c; do
        targets+=("$(basename "$f" .c)")
    done
fi

# ---- build ----
if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link >"$build.setup.log" 2>&1 || {
        cat "$build.setup.log" >&2
        echo "fuzz.sh: meson setup failed" >&2
        exit 1
    }
    rm -f "$build.setup.log"
fi
ninja_targets=()
for t in "${targets[@]}"; do
    ninja_targets+=("fuzz/$t")
done
if ! ninja -C "$build" "${ninja_targets[@]}" >/dev/null; then
    ninja -C "$build" "${ninja_targets[@]}" >&2
    echo "fuzz.sh: build failed" >&2
    exit 1
fi

# ---- run ----
# UBSan stops at the first report so libFuzzer keeps the input; ASan's
# leak check runs after every input (libFuzzer's -detect_leaks default).
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}

mkdir -p "$out"
failed=0
summary=()
total_execs=0
for t in "${targets[@]}"; do
    bin="$build/fuzz/$t"
    dir="$out/$t"
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$dir/corpus/"
    [ -d "tests/data/fuzz-regress/$t" ] && cp -r "tests/data/fuzz-regress/$t/." "$dir/corpus/"
    extra=()
    [ -f "fuzz/$t.dict" ] && extra+=("-dict=$root/fuzz/$t.dict")
    # fuzz/<target>.options: libFuzzer flags of that target, one a line
    if [ -f "fuzz/$t.options" ]; then
        while read -r opt; do
            case "$opt" in ''|'#'*) ;; *) extra+=("$opt") ;; esac
        done < "fuzz/$t.options"
    fi
    log="$dir/log.txt"
    echo "== $t: ${secs}s"
    # A bounded wall clock on top of -max_total_time: a hung target must
    # not hold CI.
    timeout --kill-after=10 $((secs + per_input + 60)) \
        "$bin" -max_total_time="$secs" -timeout="$per_input" -rss_limit_mb="$rss" \
        -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" "${extra[@]}" ${FUZZ_ARGS:-} \
        "$dir/corpus" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-0}
    total_execs=$((total_execs + execs))
    status=ok
    artifacts=$(find "$dir/artifacts" -type f | sort)
    if [ $rc -ne 0 ] || [ -n "$artifacts" ] ||
        grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
        status="FAILED (exit $rc)"
        failed=1
        echo "   log: $log" >&2
        grep -E 'ERROR:|runtime error:|fuzz property failed|SUMMARY:' "$log" | head -n 5 >&2
        for a in $artifacts; do
            echo "   input kept: $a" >&2
        done
    fi
    corpus_n=$(find "$dir/corpus" -type f | wc -l)
    line=$(printf '%-18s %6ss %12s execs %8s/s  corpus %5s  %s' "$t" "$secs" "$execs" \
        "$((secs > 0 ? execs / secs : 0))" "$corpus_n" "$status")
    echo "   $line"
    summary+=("$line")
done

echo
echo "fuzz summary (${#targets[@]} targets, ${secs}s each):"
for l in "${summary[@]}"; do
    echo "  $l"
done
echo "  total executions: $total_execs"
exit $failed
