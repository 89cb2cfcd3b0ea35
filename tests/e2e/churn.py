#!/usr/bin/env python3
"""churn.py SERVER SECONDS [SEED] - many short-lived misbehaving clients.

For SECONDS, opens connection after connection to a fresh sohub-server:
random bytes, handshake + connect + random bytes, bursts of echo calls,
createStream / play / shared-object noise, mutated valid messages, odd Set
Chunk Size values; half of them are dropped at once, up to 40 kept open.
Then a well-behaved client must still get its echo answered, the server
must still run, and SIGTERM must end it with status 0 (under the sanitizers
too).  Every wait is bounded."""
import os, random, shutil, socket, struct, subprocess, sys, tempfile, time
srv = sys.argv[1]
duration = float(sys.argv[2]) if len(sys.argv) > 2 else 5
d = tempfile.mkdtemp(prefix="sohub-e2e-churn-")
pf = d + "/port"
log = open(d + "/log", "w")
p = subprocess.Popen([srv, "--log-level", "warn", "--listen", "127.0.0.1:0", "--port-file", pf, "--data-dir", d, "--set", "handshake_timeout_ms=300", "--set", "max_output_bytes=65536"], stderr=log)
for _ in range(200):
    if os.path.exists(pf): break
    time.sleep(0.02)
port = int(open(pf).read())
def amf_str(s):
    b = s.encode(); return b'\x02' + struct.pack('>H', len(b)) + b
def amf_num(n): return b'\x00' + struct.pack('>d', n)
def msg(csid, typ, sid, body, cs=128):
    out = bytes([csid]) + b'\0\0\0' + struct.pack('>I', len(body))[1:] + bytes([typ]) + struct.pack('<I', sid)
    for i in range(0, len(body), cs):
        if i: out += bytes([0xC0 | csid])
        out += body[i:i+cs]
    return out
def hs(s):
    s.sendall(b'\x03' + b'\0'*8 + os.urandom(1528))
    got = b''
    while len(got) < 3073:
        c = s.recv(65536)
        if not c: return False
        got += c
    s.sendall(got[1:1537]); return True
connect = amf_str("connect") + amf_num(1) + b'\x03' + struct.pack('>H',3) + b'app' + amf_str("x") + b'\0\0\x09'
random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
socks = []
t0 = time.time()
n = 0
while time.time() - t0 < duration:
    n += 1
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        kind = random.randrange(6)
        if kind == 0:
            s.sendall(os.urandom(random.randrange(1, 5000)))
        elif kind >= 1:
            if not hs(s): s.close(); continue
            s.sendall(msg(3, 20, 0, connect))
            if kind == 1:
                s.sendall(os.urandom(random.randrange(1, 3000)))
            elif kind == 2:
                for i in range(random.randrange(1, 50)):
                    s.sendall(msg(3, 20, 0, amf_str("echo") + amf_num(2+i) + b'\x05' + amf_str("x"*random.randrange(0,5000))))
            elif kind == 3:
                body = amf_str("createStream") + amf_num(2) + b'\x05'
                s.sendall(msg(3, 20, 0, body) * 20)
                s.sendall(msg(8, 20, 1, amf_str("play") + amf_num(0) + b'\x05' + amf_str("s")))
                s.sendall(msg(3, 19, 0, os.urandom(100)))
            elif kind == 4:
                # mutate a valid stream of messages
                data = bytearray(msg(3, 20, 0, amf_str("echo") + amf_num(5) + b'\x05' + amf_str("y"*300)) * 5)
                for _ in range(random.randrange(1, 10)):
                    data[random.randrange(len(data))] = random.randrange(256)
                s.sendall(bytes(data))
            else:
                s.sendall(msg(2, 1, 0, struct.pack('>I', random.choice([1, 128, 4096, 0x7fffffff, 0]))))
                s.sendall(msg(3, 20, 0, amf_str("echo") + amf_num(3) + b'\x05'))
        if random.random() < 0.5:
            s.close()
        else:
            socks.append(s)
        if len(socks) > 40:
            random.choice(socks).close()
            socks = [x for x in socks if x.fileno() != -1]
    except Exception as e:
        pass
for s in socks:
    try: s.close()
    except: pass
time.sleep(0.5)
alive = p.poll() is None
# a last good client check: connect and echo
ok = False
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    hs(s); s.sendall(msg(3, 20, 0, connect)); s.sendall(msg(3, 20, 0, amf_str("echo") + amf_num(7) + b'\x05' + amf_str("final")))
    buf = b''; t1 = time.time()
    while b'final' not in buf and time.time() - t1 < 3:
        c = s.recv(65536)
        if not c: break
        buf += c
    ok = b'final' in buf
except Exception as e:
    print("final err", e)
p.terminate()
rc = p.wait(timeout=10)
print("connections", n, "alive", alive, "final echo", ok, "exit", rc)
log.close()
good = alive and ok and rc == 0
if not good:
    sys.stdout.write(open(d + "/log").read()[-20000:])
shutil.rmtree(d, ignore_errors=True)
sys.exit(0 if good else 1)
