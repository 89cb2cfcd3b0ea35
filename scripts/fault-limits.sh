#!/bin/sh
# One client pushes every documented limit; refused at the limit, a real
# client unaffected (docs/faults.md).
. "$(dirname "$0")/fault-common.sh"
fault_run fault_limits -- "$@"
