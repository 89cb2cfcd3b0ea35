#!/bin/sh
# Thousands of abusive connections (slowloris, garbage, open/close,
# non-reading subscribers) while real clients are timed.  Long version
# (default): 5000 slowloris, 500 garbage, 200 open/close, 200 non-readers,
# 1000 reconnections/s, 30 s of abuse, latency ratio asserted (--strict).
# Options: --slow --garbage --openclose --nonreaders --churn --quiet-ms
# --abuse-ms --pace-us --seed --strict --keep (docs/faults.md).
. "$(dirname "$0")/fault-common.sh"
fault_run fault_abuse --slow 5000 --garbage 500 --openclose 200 --nonreaders 200 \
    --churn 1000 --quiet-ms 5000 --abuse-ms 30000 --strict -- "$@"
