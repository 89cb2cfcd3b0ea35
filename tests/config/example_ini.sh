#!/bin/sh
# example_ini.sh SERVER SRCDIR - sohub.example.ini stays true: every
# [server] key of the defaults table (app/config.c) and every [app] key
# (config.c's app_config_set_app) is in it, and the file, as shipped and
# with every setting uncommented, is accepted by `sohub-server --check`.
set -u
server=$1
src=$2
ex="$src/sohub.example.ini"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); fail=1; echo "not ok $n - $*"; }

keys=$( (sed -n 's/^ *U\(32\|64\)(\([a-z_]*\),.*/\2/p' "$src/app/config.c";
         sed -n 's/.*strcmp(key, "\([a-z_]*\)") == 0.*/\1/p' "$src/app/config.c") | sort -u)
missing=""
for k in $keys; do
    grep -q "^;$k = \|^;$k =$" "$ex" || missing="$missing $k"
done
[ -z "$missing" ] && ok "every key of app/config.c is in sohub.example.ini" \
                  || bad "keys missing from sohub.example.ini:$missing"

"$server" --config "$ex" --check --data-dir "$tmp/d1" >"$tmp/out1" 2>&1 \
    && ok "sohub.example.ini as shipped is accepted" || { bad "shipped file refused"; cat "$tmp/out1"; }
sed 's/^;\([a-z_[]\)/\1/' "$ex" >"$tmp/all.ini"
"$server" --config "$tmp/all.ini" --check --data-dir "$tmp/d2" >"$tmp/out2" 2>&1 \
    && ok "every setting uncommented (the defaults) is accepted" || { bad "uncommented file refused"; cat "$tmp/out2"; }
echo "1..$n"
exit $fail
