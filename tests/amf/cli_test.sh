#!/bin/sh
# End-to-end test of `sohub-cli amf`: JSON -> AMF -> JSON round trips in
# both encodings (hex and binary), decoding the generated vectors, and bad
# input (exit status 1 and a message naming the offset).
# usage: cli_test.sh PATH/TO/sohub-cli PATH/TO/tests/data/amf
set -u
CLI=$1
VEC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# Input in the exact form the decoder prints, so output must equal input.
cat > "$T/in.jsonl" <<'JSON'
null
true
1.5
"h\u00e9llo"
{"from":"alice","text":"hi","ts":1700000000123,"id":42}
[1,"two",[3],{"four":4}]
{"$amf":"undefined"}
{"$amf":"number","value":"NaN"}
{"$amf":"date","ms":1700000000123,"tz":0}
{"$amf":"xmldoc","text":"<a/>"}
{"$amf":"object","class":"com.example.Person","members":{"name":"Ann","age":42}}
{"$amf":"ecma","count":1,"members":{"k":"v"}}
JSON
cat > "$T/in3.jsonl" <<'JSON'
{"$amf":"int","value":-5}
{"$amf":"bytes","hex":"00ff10"}
{"$amf":"xml","text":"<x/>"}
{"$amf":"vector-int","fixed":true,"items":[-1,2]}
{"$amf":"vector-uint","fixed":false,"items":[4294967295]}
{"$amf":"vector-double","fixed":false,"items":[0.5]}
{"$amf":"vector-object","class":"com.T","fixed":false,"items":[null]}
{"$amf":"dict","weak":true,"entries":[["k",{"$amf":"int","value":1}]]}
{"$amf":"ecma","members":{"a":"b"},"dense":[true]}
{"$amf":"object","class":"com.T","dynamic":true,"sealed":1,"members":{"s":1,"d":2}}
{"$amf":"object","class":"flex.messaging.io.ArrayCollection","external":["x"]}
JSON
# what decode prints: raw UTF-8 for \u00e9; AMF3 has no ECMA count field;
# AMF0 writes integers as numbers
sed 's/\\u00e9/\xc3\xa9/' "$T/in.jsonl" > "$T/want.amf0"
sed 's/"count":1,//' "$T/want.amf0" > "$T/want.amf3"
cp "$T/in3.jsonl" "$T/want3.amf3"
sed 's/^{"$amf":"int","value":-5}$/-5/' "$T/in3.jsonl" > "$T/want3.amf0"

for enc in amf0 amf3; do
    "$CLI" amf encode --$enc --hex < "$T/in.jsonl" > "$T/hex.$enc" &&
        "$CLI" amf decode --$enc --hex "$T/hex.$enc" > "$T/out.$enc" &&
        cmp -s "$T/out.$enc" "$T/want.$enc" && ok || bad "hex round trip $enc"
    "$CLI" amf encode --$enc < "$T/in.jsonl" > "$T/bin.$enc" &&
        "$CLI" amf decode --$enc < "$T/bin.$enc" > "$T/outb.$enc" &&
        cmp -s "$T/outb.$enc" "$T/want.$enc" && ok || bad "binary round trip $enc"
done
# AMF3-only values, in AMF3 and through AMF0's 0x11 switch
for enc in amf3 amf0; do
    "$CLI" amf encode --$enc --hex < "$T/in3.jsonl" > "$T/hex3.$enc" &&
        "$CLI" amf decode --$enc --hex < "$T/hex3.$enc" > "$T/out3.$enc" &&
        cmp -s "$T/out3.$enc" "$T/want3.$enc" && ok || bad "amf3 values via $enc"
done
# known bytes: an AMF0 string and an AMF3 integer
[ "$(echo '{"$amf":"int","value":5}' | "$CLI" amf encode --amf3 --hex)" = "0405" ] && ok || bad "encode int"
[ "$(printf '\002\000\002hi' | "$CLI" amf decode)" = '"hi"' ] && ok || bad "decode string"

# the generated vectors decode (spot check: the chat message)
[ "$("$CLI" amf decode --amf3 "$VEC/chat.amf3.bin")" = \
  '{"from":"alice","text":"hello, world","ts":1700000000123,"id":{"$amf":"int","value":42}}' ] &&
    ok || bad "decode chat.amf3.bin"

# bad input: exit 1 with the offset on stderr
check_bad() { # name expected-offset-text cmd...
    name=$1; want=$2; shift 2
    "$@" > /dev/null 2> "$T/err"
    st=$?
    [ $st -eq 1 ] || { bad "$name: exit $st"; return; }
    grep -q "$want" "$T/err" && ok || bad "$name: stderr: $(cat "$T/err")"
}
printf '0300016100' > "$T/trunc.hex"
check_bad "truncated" "offset 0: truncated" "$CLI" amf decode --hex "$T/trunc.hex"
printf '0512' > "$T/badmarker.hex"
check_bad "bad marker" "offset 1: unknown AMF0 marker" "$CLI" amf decode --hex "$T/badmarker.hex"
printf '05 0x' > "$T/badhex.hex"
check_bad "bad hex" "offset 4 of the hex text" "$CLI" amf decode --hex "$T/badhex.hex"
printf '{"a":1}\n{"b":' > "$T/badjson"
check_bad "bad json" "offset 1[0-9]: invalid JSON" "$CLI" amf encode "$T/badjson"
printf '{"$amf":"what"}' > "$T/badtag"
check_bad "bad tag" "unknown \$amf tag" "$CLI" amf encode "$T/badtag"
check_bad "cycle" "cycle" "$CLI" amf decode "$VEC/cycle.amf0.bin"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
