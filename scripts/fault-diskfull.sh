#!/bin/sh
# The data directory's disk fills up (tmpfs or loop ext4; needs root):
# StoreFailed answers, recovery without restart, integrity_check, nothing
# acknowledged lost.  Options: --size-mb N --keep (docs/faults.md).
. "$(dirname "$0")/fault-common.sh"
fault_run fault_diskfull -- "$@"
