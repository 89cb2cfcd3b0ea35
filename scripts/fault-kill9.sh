#!/bin/sh
# kill -9 of sohub-server under shared-object and chat load, N rounds; after
# each restart every acknowledged change and message must be there.
# Long version (default): 20 rounds.  Options: --rounds N --writers N
# --max-delay MS --seed S --keep --strict-ids (docs/faults.md).
. "$(dirname "$0")/fault-common.sh"
fault_run fault_kill9 --rounds 20 -- "$@"
