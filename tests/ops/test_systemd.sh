#!/bin/sh
# test_systemd.sh SERVER SRCDIR - contrib/sohub.service is a unit systemd
# accepts, sandboxed as contrib/README.md says, and its commands work.
#   - `systemd-analyze verify` on the unit (the binary path pointed at the
#     built server, since verify checks that ExecStart= is executable): exit
#     0 and not one warning; a copy with a misspelled key must make it
#     complain (the check can fail);
#   - every sandboxing setting the issue asks for is in the unit, and
#     `systemd-analyze security --offline=yes` rates it at most 2.0;
#   - the unit's ExecStartPre (--check) and ExecStart command lines run
#     against the built server: the check accepts sohub.example.ini and
#     refuses a misspelled key (status 2), the server starts (a scratch
#     config on port 0) and answers SIGTERM with exit 0;
#   - contrib/sohub.sysusers makes the sohub user (systemd-sysusers into a
#     scratch root).
# TAP; exit 77 when systemd-analyze is not installed (Debian: systemd).
set -u
server=$1
src=$2
unit="$src/contrib/sohub.service"
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); fail=1; echo "not ok $n - $*"; }
command -v systemd-analyze >/dev/null 2>&1 || { echo "1..0 # SKIP systemd-analyze not installed"; exit 77; }
tmp=$(mktemp -d /tmp/sohub-ops-systemd.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# the unit as installed, with the built server in place of /usr/local/bin's
sed "s#/usr/local/bin/sohub-server#$server#g" "$unit" > "$tmp/sohub.service"
systemd-analyze verify "$tmp/sohub.service" > "$tmp/verify.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ ! -s "$tmp/verify.out" ]; then
    ok "systemd-analyze verify: no error, no warning"
else
    bad "systemd-analyze verify: status $rc"
    sed 's/^/# /' "$tmp/verify.out"
fi
mkdir "$tmp/bad"
sed 's/^ProtectSystem=/ProtectSystm=/' "$tmp/sohub.service" > "$tmp/bad/sohub.service"
systemd-analyze verify "$tmp/bad/sohub.service" > "$tmp/bad.out" 2>&1
grep -q "ProtectSystm" "$tmp/bad.out" && ok "a misspelled key is reported (the check has teeth)" \
    || bad "a misspelled key went unnoticed"

missing=""
for want in "ProtectSystem=strict" "ReadWritePaths=/var/lib/sohub" "StateDirectory=sohub" \
    "NoNewPrivileges=yes" "PrivateTmp=yes" "ProtectHome=yes" \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "MemoryDenyWriteExecute=yes" \
    "SystemCallFilter=@system-service" "CapabilityBoundingSet=" "LimitNOFILE=" \
    'ExecReload=/bin/kill -HUP $MAINPID' "User=sohub"; do
    grep -q "^$want" "$unit" || missing="$missing [$want]"
done
[ -z "$missing" ] && ok "the unit has every sandboxing setting asked for" \
    || bad "missing from the unit:$missing"
nofile=$(sed -n 's/^LimitNOFILE=//p' "$unit")
[ "${nofile:-0}" -ge 8192 ] && ok "LimitNOFILE=$nofile is above max_connections (4096) and the rest" \
    || bad "LimitNOFILE=$nofile is too low for max_connections"

if systemd-analyze security --offline=yes "$tmp/sohub.service" > "$tmp/sec.out" 2>&1; then
    level=$(sed -n 's/.*Overall exposure level for sohub.service: \([0-9.]*\).*/\1/p' "$tmp/sec.out")
    if [ -n "$level" ] && awk "BEGIN { exit !($level <= 2.0) }"; then
        ok "systemd-analyze security: exposure $level (<= 2.0)"
    else
        bad "systemd-analyze security: exposure '${level:-?}'"
        tail -5 "$tmp/sec.out" | sed 's/^/# /'
    fi
else
    echo "# systemd-analyze security --offline is not supported here: $(head -1 "$tmp/sec.out")"
fi

# The unit's own command lines, with a scratch config and data directory.
printf '[server]\nlisten = 127.0.0.1:0\n' > "$tmp/sohub.ini"
pre=$(sed -n 's/^ExecStartPre=//p' "$tmp/sohub.service" | sed "s#/etc/sohub/sohub.ini#$src/sohub.example.ini#; s#/var/lib/sohub#$tmp/data#")
start=$(sed -n 's/^ExecStart=//p' "$tmp/sohub.service" | sed "s#/etc/sohub/sohub.ini#$tmp/sohub.ini#; s#/var/lib/sohub#$tmp/data#")
# shellcheck disable=SC2086
out=$(timeout 20 $pre 2>/dev/null)
rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q ": OK$" && ok "ExecStartPre (--check) accepts sohub.example.ini" \
    || bad "ExecStartPre: status $rc, '$out'"
printf '[server]\nmax_conections = 5\n' > "$tmp/typo.ini"
typo=$(echo "$pre" | sed "s#$src/sohub.example.ini#$tmp/typo.ini#")
# shellcheck disable=SC2086
timeout 20 $typo > "$tmp/typo.out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "max_conections" "$tmp/typo.out" && ok "ExecStartPre refuses a bad configuration (status 2, the key named)" \
    || bad "ExecStartPre on a bad file: status $rc"
# shellcheck disable=SC2086
$start --port-file "$tmp/port" > "$tmp/server.log" 2>&1 &
pid=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if [ -s "$tmp/port" ]; then
    ok "ExecStart starts the server (port $(head -1 "$tmp/port"))"
else
    bad "ExecStart: the server did not start"
    sed 's/^/# /' "$tmp/server.log"
fi
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    bad "the server ignored SIGTERM (KillSignal) for 10 s"
else
    wait "$pid"
    rc=$?
    [ $rc -eq 0 ] && ok "SIGTERM (KillSignal) stops it with status 0" || bad "SIGTERM: status $rc"
fi
pid=""

if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$tmp/root/etc"
    if systemd-sysusers --root="$tmp/root" "$src/contrib/sohub.sysusers" >/dev/null 2>&1 &&
        grep -q '^sohub:x:[0-9]*:[0-9]*:[^:]*:/var/lib/sohub:' "$tmp/root/etc/passwd"; then
        ok "contrib/sohub.sysusers makes the sohub user, home /var/lib/sohub"
    else
        bad "systemd-sysusers did not make the sohub user"
    fi
else
    echo "# systemd-sysusers not installed: the sysusers file is not checked"
fi
echo "1..$n"
exit $fail
