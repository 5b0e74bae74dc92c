#!/usr/bin/python3
"""The durable-write limit of the disk under the queue: how many 1 KB files
per second can be made durable the way queue-inject makes each message
durable (smtpd-queue(5)), with 1 writer and with 20 at once, and nothing
else (no SMTP, no processes started).

One write is: create a work file in tmp/, write the message, fsync it,
give it its name in new/, fsync new/. Two ways of naming it are measured:
  tmpfile  O_TMPFILE in tmp/ (no name until it is complete), then linkat
           into new/: what queue-inject does where the kernel allows it
  rename   a named file in tmp/ (O_EXCL), then rename into new/ without
           clobbering (renameat2 RENAME_NOREPLACE): queue-inject before,
           and its fallback without O_TMPFILE or /proc
Writers are threads of this process (each system call releases the
interpreter's lock), each with its own files; the CPU time is this
process's, per write, interpreter included.

Usage: durable.py [dir]  (default BENCH_DIR or ./var/bench; it must be on
the disk to measure: a tmpfs fsyncs for free). Environment:
BENCH_DURABLE_WRITES (2000; 200 with BENCH_SCALE=small), BENCH_DURABLE_WRITERS
("1 20"), BENCH_DURABLE_WAYS ("tmpfile rename"), BENCH_MSG_SIZE (1024),
BENCH_RUNS (3, medians).
"""

import ctypes
import os
import shutil
import statistics
import sys
import threading
import time

SMALL = os.environ.get("BENCH_SCALE", "full") == "small"
WRITES = int(os.environ.get("BENCH_DURABLE_WRITES") or (200 if SMALL else 2000))
WRITERS = [int(w) for w in os.environ.get("BENCH_DURABLE_WRITERS", "1 20").split()]
WAYS = os.environ.get("BENCH_DURABLE_WAYS", "tmpfile rename").split()
SIZE = int(os.environ.get("BENCH_MSG_SIZE") or 1024)
RUNS = int(os.environ.get("BENCH_RUNS") or 3)
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400
RENAME_NOREPLACE = 1
TITLES = {
    "tmpfile": "O_TMPFILE, fsync, linkat, fsync new/",
    "rename": "named file, fsync, rename, fsync new/",
    "group": "O_TMPFILE, fsync, linkat, one fsync of new/ for the links before it",
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(r, what):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


class Group:
    """Group commit of the fsyncs of new/ among writers, across processes:
    a lock file beside new/ holds two counters, fsyncs started and done.
    A writer reads `started` after its link; any fsync numbered above that
    began after the link, so once `done` passes it, the link is durable;
    otherwise the writer takes the lock and runs the next fsync itself."""

    def __init__(self, q):
        self.path = os.path.join(q, "sync")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(fd, b"\0" * 32, 0)
        os.close(fd)

    def opener(self):
        return os.open(self.path, os.O_RDWR)

    @staticmethod
    def read(fd, off):
        while True:
            b = os.pread(fd, 16, off)
            v, c = int.from_bytes(b[:8], "little"), int.from_bytes(b[8:], "little")
            if v ^ c == 0xFFFFFFFFFFFFFFFF or (v == 0 and c == 0):
                return v

    @staticmethod
    def write(fd, off, v):
        os.pwrite(fd, v.to_bytes(8, "little") + (v ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"), off)

    def sync(self, lfd, newfd):
        import fcntl
        s = self.read(lfd, 0)
        fcntl.flock(lfd, fcntl.LOCK_EX)
        try:
            if self.read(lfd, 16) > s:
                return
            g = self.read(lfd, 0) + 1
            self.write(lfd, 0, g)
            os.fsync(newfd)
            self.write(lfd, 16, g)
        finally:
            fcntl.flock(lfd, fcntl.LOCK_UN)


def write_one(way, tmp, new, newfd, name, data, group=None, lfd=None):
    target = os.path.join(new, name).encode()
    if way in ("tmpfile", "group"):
        fd = os.open(tmp, os.O_TMPFILE | os.O_WRONLY, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
            _check(_libc.linkat(AT_FDCWD, ("/proc/self/fd/%d" % fd).encode(), AT_FDCWD, target,
                                AT_SYMLINK_FOLLOW), "linkat")
        finally:
            os.close(fd)
    else:
        work = os.path.join(tmp, name)
        fd = os.open(work, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        _check(_libc.renameat2(AT_FDCWD, work.encode(), AT_FDCWD, target, RENAME_NOREPLACE), "renameat2")
    if group:
        group.sync(lfd, newfd)
    else:
        os.fsync(newfd)


def one_run(base, way, writers, writes):
    """Writes per second and CPU seconds per write for `writers` threads
    making `writes` files durable in a fresh queue under `base`."""
    q = os.path.join(base, "durable-%s-%d-%d" % (way, writers, time.monotonic_ns()))
    tmp, new = os.path.join(q, "tmp"), os.path.join(q, "new")
    os.makedirs(tmp, mode=0o700)
    os.makedirs(new, mode=0o700)
    newfd = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
    data = b"x" * (SIZE - 1) + b"\n"
    lock = threading.Lock()
    left = [writes]
    errors = []

    group = Group(q) if way == "group" else None

    def writer(w):
        i = 0
        lfd = group.opener() if group else None
        while True:
            with lock:
                if left[0] <= 0 or errors:
                    return
                left[0] -= 1
            i += 1
            try:
                write_one(way, tmp, new, newfd, "%d.%d" % (w, i), data, group, lfd)
            except OSError as e:
                errors.append(e)
                return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    c0, t0 = time.process_time(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t, c = time.monotonic() - t0, time.process_time() - c0
    os.close(newfd)
    n = len(os.listdir(new))
    # Left in place until measure() is done: files freed now would slow the
    # next run's creations (bench.py's discard() says why).
    if errors:
        raise errors[0]
    if n != writes:
        raise RuntimeError("%d writes, %d files in new/" % (writes, n))
    return writes / t, c / writes


def measure(base, log=lambda *a: None):
    """{(way, writers): (median writes/s, median CPU s per write)}; a way
    that the file system refuses is left out (and logged)."""
    out = {}
    try:
        _measure(base, log, out)
    finally:
        for n in os.listdir(base):
            if n.startswith("durable-"):
                shutil.rmtree(os.path.join(base, n), ignore_errors=True)
    return out


def _measure(base, log, out):
    for way in WAYS:
        for w in WRITERS:
            rates, cpus = [], []
            try:
                for r in range(RUNS):
                    rate, cpu = one_run(base, way, w, WRITES)
                    rates.append(rate)
                    cpus.append(cpu)
                    log("durable %-7s %2d writers run %d: %.0f writes/s, %.0f us CPU each" % (way, w, r + 1, rate, cpu * 1e6))
            except (OSError, RuntimeError) as e:
                log("durable %s: not measured: %s" % (way, e))
                break
            out[(way, w)] = (statistics.median(rates), statistics.median(cpus))


def render(res):
    if not res:
        return []
    lines = ["| durable writes of %d bytes (%d each, medians of %d) | %s |" % (
                 SIZE, WRITES, RUNS, " | ".join("%d writer%s" % (w, "" if w == 1 else "s") for w in WRITERS)),
             "|---" * (len(WRITERS) + 1) + "|"]
    for way in WAYS:
        cells = []
        for w in WRITERS:
            v = res.get((way, w))
            cells.append("%.0f/s (%.0f us CPU)" % (v[0], v[1] * 1e6) if v else "-")
        lines.append("| %s | %s |" % (TITLES.get(way, way), " | ".join(cells)))
    lines.append("The disk's limit for the queue's rule (tests/bench/durable.py): nothing but the writes, "
                 "threads of one process; the CPU is that process's per write (a Python interpreter's "
                 "included).")
    return lines


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "BENCH_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "var", "bench"))
    os.makedirs(base, exist_ok=True)
    res = measure(base, lambda *a: print("bench:", *a, file=sys.stderr, flush=True))
    print("\n".join(render(res)))
    return 0 if res else 1


if __name__ == "__main__":
    sys.exit(main())
