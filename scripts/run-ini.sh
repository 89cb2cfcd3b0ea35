#!/bin/sh
# run-ini.sh FILE - the configuration `make run` uses: no [app] section (every
# application name is served with open access, on loopback), and one API
# key for the admin listener, random, printed once.
set -eu
file=$1
secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
umask 077
cat >"$file" <<EOF2
; Written by make run (scripts/run-ini.sh).  Every key: sohub.example.ini.
[server]
log_level = info

[api_key local]
secret = $secret
scope = write
EOF2
echo "make run: wrote $file; server API key (Authorization: Bearer ...): $secret"
