#!/bin/sh
# Runs the long version of every fault test, one after the other, and
# prints each one's FIGURES line.  Exit status: number of failed programs.
dir=$(dirname "$0")
failed=0
for t in kill9 diskfull abuse limits; do
    echo "=== fault-$t"
    if ! sh "$dir/fault-$t.sh"; then
        failed=$((failed + 1))
        echo "=== fault-$t FAILED"
    fi
done
echo "=== $failed failed"
exit $failed
