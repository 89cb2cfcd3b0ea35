#!/usr/bin/python3
"""test_health.py SERVER - /healthz and /readyz of the real server.

The data directory is on a small tmpfs mounted here (as
tests/fault/fault_diskfull.c does; a loop-mounted ext4 image when tmpfs
cannot be mounted).  Checks:
  - /healthz and /readyz answer 200 without a key; /readyz says "ok";
  - the disk filled up (a filler file written until ENOSPC), persistent
    writes through the server API until the store refuses one (503
    store_failed): /readyz turns 503 and says why, /healthz stays 200,
    and /metrics counts the failed store batches;
  - the filler removed, no restart: /readyz comes back to 200 by itself
    (the failed batch's rewrite goes through) and a new persistent write
    is stored;
  - a clean stop.
Every wait is bounded.  TAP on stdout; exit 1 on a failed check, 77 when
no small file system can be mounted (not root)."""

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opsutil import (Admin, Server, check, finish, metric, note, parse_metrics,  # noqa: E402
                     skip_all, wait_for)

KEY = "ops-health-key-0123456789"
CONFIG = """[server]
admin_listen = 127.0.0.1:0

[api_key ops]
secret = %s
scope = write
""" % KEY
SIZE_MB = 8
OBJ = "/api/v1/apps/health/instances/i/objects/"


def quiet(argv):
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=30).returncode


def mount_small(mnt, work):
    if quiet(["mount", "-t", "tmpfs", "-o", "size=%dm" % SIZE_MB, "tmpfs", mnt]) == 0:
        note("data directory on a %d MiB tmpfs" % SIZE_MB)
        return True
    img = os.path.join(work, "disk.img")
    if (quiet(["dd", "if=/dev/zero", "of=" + img, "bs=1M", "count=%d" % (SIZE_MB * 2)]) == 0
            and quiet(["mkfs.ext4", "-q", "-F", img]) == 0
            and quiet(["mount", "-o", "loop", img, mnt]) == 0):
        note("data directory on a loop-mounted ext4 image")
        return True
    return False


def fill(path):
    """Writes path until the file system refuses; returns bytes written."""
    total = 0
    buf = b"\xab" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 64, 1):
            while True:
                try:
                    n = os.write(fd, buf[:size])
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                if n <= 0:
                    break
                total += n
    finally:
        os.close(fd)
    return total


def write(api, name, value):
    st, body = api.request("POST", OBJ + name, json.dumps({"set": {"v": value}}))
    return st, body.decode("utf-8", "replace")


def ready(admin):
    return admin.get("/readyz")


def main():
    if len(sys.argv) != 2:
        print("usage: test_health.py SERVER", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="sohub-ops-health-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    if not mount_small(mnt, work):
        shutil.rmtree(work, ignore_errors=True)
        skip_all("cannot mount a small file system here (tmpfs or loop; needs root)")
    data = os.path.join(mnt, "data")
    filler = os.path.join(mnt, "filler")
    srv = Server(sys.argv[1], CONFIG, data_dir=data, workdir=work)
    try:
        if not check(srv.start() and "admin" in srv.ports, "the server starts, data on the "
                     "small file system"):
            note(srv.log_text()[-3000:])
            return
        admin = Admin(srv.ports["admin"])
        api = Admin(srv.ports["admin"], KEY)
        st, body = admin.get("/healthz")
        check(st == 200 and body == b"ok\n", "/healthz: 200 ok")
        st, body = ready(admin)
        check(st == 200 and body == b"ok\n", "/readyz: 200 ok (store writable, listeners up)")
        st, body = write(api, "a", 1)
        check(st == 200, "a persistent write is stored (%d %s)" % (st, body.strip()))

        written = fill(filler)
        note("filler: %d bytes until ENOSPC" % written)
        big = "x" * 50000  # under the engine's 64 KiB value cap
        refused = None
        for i in range(400):
            st, body = write(api, "big%d" % (i % 8), big + str(i))
            if st != 200:
                refused = (i, st, body.strip())
                break
        check(refused is not None and refused[1] == 503 and "store_failed" in refused[2],
              "with the disk full a persistent write is refused: %s" % (refused,))
        r = wait_for(lambda: (lambda a: a if a[0] == 503 else None)(ready(admin)), 5)
        check(r is not None and b"store" in r[1], "/readyz: 503 while the store cannot write "
              "(%s)" % (r[1].decode().strip() if r else str(ready(admin))))
        st, body = admin.get("/healthz")
        check(st == 200, "/healthz stays 200 (the process is up)")
        m = parse_metrics(admin.get("/metrics")[1].decode())
        check((metric(m, "sohub_store_failures_total") or 0) >= 1,
              "/metrics counts the failed store batches (%s)"
              % metric(m, "sohub_store_failures_total"))

        os.unlink(filler)
        r = wait_for(lambda: (lambda a: a if a[0] == 200 else None)(ready(admin)), 10, 0.1)
        check(r is not None and r[1] == b"ok\n", "space freed, no restart: /readyz back to "
              "200 by itself")
        st, body = write(api, "after", 2)
        check(st == 200, "a persistent write is stored again (%d %s)" % (st, body.strip()))
        st, body = ready(admin)
        check(st == 200, "/readyz still 200 after it")
        admin.close()
        api.close()
        rc = srv.stop()
        check(rc == 0, "the server stops cleanly (status %s)" % rc)
    finally:
        srv.stop()
        if quiet(["umount", mnt]) != 0:
            quiet(["umount", "-l", mnt])
        shutil.rmtree(work, ignore_errors=True)
    finish()


if __name__ == "__main__":
    main()
