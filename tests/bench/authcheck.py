#!/usr/bin/python3
"""auth-check on its own: its rate and CPU per message through its
session-mode queue interface, and its peak RSS with a 100 MB message.

One `auth-check -s` reads N 1 KB messages (frames in a file, as smtpd-rs
sends them) and hands them to queue-inject; /usr/bin/time reports the
wall time, the CPU of auth-check and of the queue-inject it waited for,
and the peak RSS. The same messages go through five ways:

  queue-inject alone        the frames straight to `queue-inject -s` (no auth-check)
  not checked               auth-check with CLIENT_LOGIN set: no check, passed on
  SPF + DMARC               unsigned: SPF of MAIL FROM and HELO, DMARC (DNS cached)
  + DKIM rsa-sha256         signed by dkimpy's dkimsign, RSA-2048
  + DKIM ed25519-sha256     signed by dkimsign, Ed25519

The difference between two rows is the CPU of one check per message.
Records come from a local DNS server (dnsserver.py). The queue is on
/dev/shm when there is one (fsync costs nothing there, so that the figures
are auth-check's and not the disk's), else under BENCH_DIR.

Then one 100 MB message (signed, ed25519) through auth-check per message
(QMAILQUEUE style) and in session mode: peak RSS, which the spool keeps
bounded (128 KiB in memory, then a file).

BENCH_SCALE=small: 200 messages and a 10 MB message (full: 5000, 100 MB);
BENCH_AC_MSGS, BENCH_AC_BIG_MB set them alone. BENCH_BIN (./bin).
Needs: openssl, python3-dkim (dkimsign), python3-dnspython, time.
"""

import base64
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsserver  # noqa: E402

SMALL = os.environ.get("BENCH_SCALE", "full") == "small"
N = int(os.environ.get("BENCH_AC_MSGS", "200" if SMALL else "5000"))
BIG_MB = int(os.environ.get("BENCH_AC_BIG_MB", "10" if SMALL else "100"))
BIN = os.path.abspath(os.environ.get("BENCH_BIN", os.path.join(TOP, "bin")))
TIME = "/usr/bin/time"


def need(path, package):
    if not (shutil.which(path) or os.access(path, os.X_OK)):
        sys.exit("authcheck bench: %s missing: apt-get install %s" % (path, package))


def netstring(p):
    return b"%d:%s," % (len(p), p)


def frames(env, attrs, msg):
    out = [netstring(b"E" + env), netstring(b"A" + attrs)]
    for i in range(0, len(msg), 65536):
        out.append(netstring(b"D" + msg[i:i + 65536]))
    out.append(netstring(b"."))
    return b"".join(out)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env, stdin_path, stdout_path):
    """Run cmd under /usr/bin/time: (wall s, user+sys s, max RSS KB). The
    CPU comes from getrusage (microseconds; /usr/bin/time has 10 ms), and
    covers the program and the children it waited for."""
    tfile = stdout_path + ".time"
    with open(stdin_path, "rb") as i, open(stdout_path, "wb") as o:
        c0 = children_cpu()
        t0 = time.monotonic()
        r = subprocess.run([TIME, "-o", tfile, "-f", "%M"] + cmd, stdin=i, stdout=o, stderr=subprocess.PIPE, env=env)
        wall = time.monotonic() - t0
        cpu = children_cpu() - c0
    if r.returncode != 0:
        sys.exit("authcheck bench: %s: exit %d: %s" % (cmd, r.returncode, r.stderr.decode(errors="replace")[-2000:]))
    return wall, cpu, int(open(tfile).read().split()[-1])


def main():
    for p, pkg in (("openssl", "openssl"), ("dkimsign", "python3-dkim"), (TIME, "time")):
        need(p, pkg)
    for b in ("auth-check", "queue-inject"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            sys.exit("authcheck bench: %s/%s missing: run make" % (BIN, b))
    if not dnsserver.available():
        sys.exit("authcheck bench: python3-dnspython missing: apt-get install python3-dnspython")
    work = tempfile.mkdtemp(prefix="authcheck-bench.")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    qroot = tempfile.mkdtemp(prefix="authcheck-queue.", dir=shm) if shm else os.path.join(work, "q")
    try:
        return run(work, qroot, shm)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(qroot, ignore_errors=True)


def run(work, qroot, shm):
    w = lambda f: os.path.join(work, f)
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True).stdout
    sh("openssl", "genrsa", "-out", w("rsa.pem"), "2048")
    sh("openssl", "genpkey", "-algorithm", "ed25519", "-out", w("ed.pem"))
    rsa_pub = base64.b64encode(sh("openssl", "rsa", "-in", w("rsa.pem"), "-pubout", "-outform", "DER")).decode()
    ed_der = sh("openssl", "pkey", "-in", w("ed.pem"), "-pubout", "-outform", "DER")
    ed_pub = base64.b64encode(ed_der[-32:]).decode()
    pem = open(w("ed.pem")).read()
    seed = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))[-32:]
    with open(w("ed.seed"), "wb") as f:
        f.write(base64.b64encode(seed))
    split = lambda s: [s[i:i + 250] for i in range(0, len(s), 250)]
    port, stop = dnsserver.serve({
        "example.org": [("TXT", ["v=spf1 ip4:127.0.0.1 -all"])],
        "client.example.org": [("TXT", ["v=spf1 ip4:127.0.0.1 -all"])],
        "_dmarc.example.org": [("TXT", ["v=DMARC1; p=none"])],
        "rsa._domainkey.example.org": [("TXT", ["v=DKIM1; k=rsa; "] + split("p=" + rsa_pub))],
        "ed._domainkey.example.org": [("TXT", ["v=DKIM1; k=ed25519; p=" + ed_pub])],
    })
    body = ("The quick brown fox jumps over the lazy dog, again and again and again.\n" * 13).encode()
    plain = (b"From: Bench <bench@example.org>\nTo: user@example.com\nSubject: bench\n"
             b"Date: Mon, 1 Jan 2024 10:00:00 +0000\nMessage-ID: <bench@example.org>\n\n" + body)

    def dkimsign(msg, sel, key, alg):
        return subprocess.run(["dkimsign", "--signalg=" + alg, sel, "example.org", key],
                              input=msg, check=True, capture_output=True).stdout

    signed = {
        "rsa": dkimsign(plain, "rsa", w("rsa.pem"), "rsa-sha256"),
        "ed": dkimsign(plain, "ed", w("ed.seed"), "ed25519-sha256"),
    }
    env_frame = b"Fbench@example.org\0Tuser@example.com\0\0"
    checked = b"CLIENT_ADDR=127.0.0.1\nCLIENT_HELO=client.example.org\nCLIENT_PROTO=ESMTP\n"
    cases = [
        ("queue-inject alone", "qi", checked, plain),
        ("not checked (CLIENT_LOGIN)", "ac", checked + b"CLIENT_LOGIN=bench\n", plain),
        ("SPF + DMARC, unsigned", "ac", checked, plain),
        ("+ DKIM rsa-sha256", "ac", checked, signed["rsa"]),
        ("+ DKIM ed25519-sha256", "ac", checked, signed["ed"]),
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "QUEUE_DIR": qroot,
        "DNS_SERVER": "127.0.0.1:%d" % port,
        "PUBLIC_SUFFIX_LIST": os.path.join(TOP, "tests", "data", "psl", "public_suffix_list.dat"),
        "SMTPD_HOSTNAME": "bench.invalid",
        "AUTHCHECK_QUEUE": os.path.join(BIN, "queue-inject"),
        "AUTHCHECK_SPOOL": work,
        "LANG": "C",
    }
    rows = []
    for title, prog, attrs, msg in cases:
        path = w("frames")
        with open(path, "wb") as f:
            f.write(frames(env_frame, attrs, msg) * N)
        cmd = [os.path.join(BIN, "queue-inject" if prog == "qi" else "auth-check"), "-s"]
        wall, cpu, rss = timed(cmd, env, path, w("answers"))
        answers = open(w("answers"), "rb").read()
        if answers.count(b":0 ") != N:
            sys.exit("authcheck bench: %s: not every message was queued: %r" % (title, answers[:300]))
        newdir = os.path.join(qroot, "new")
        for name in os.listdir(newdir):
            os.unlink(os.path.join(newdir, name))
        rows.append((title, N / wall, cpu / N * 1e6))
        print("authcheck bench: %-28s %7.0f msg/s, %6.1f us CPU/msg" % (title, N / wall, cpu / N * 1e6), file=sys.stderr)
    # The 100 MB message, signed (ed25519), per message and in session mode.
    line = b"0123456789 The quick brown fox jumps over the lazy dog, again and again.\n"
    big = plain.split(b"\n\n")[0] + b"\n\n" + line * (BIG_MB * 1024 * 1024 // len(line))
    big = dkimsign(big, "ed", w("ed.seed"), "ed25519-sha256")
    with open(w("big.frames"), "wb") as f:
        f.write(frames(env_frame, checked, big))
    _, _, rss_session = timed([os.path.join(BIN, "auth-check"), "-s"], env, w("big.frames"), w("answers"))
    if b":0 " not in open(w("answers"), "rb").read():
        sys.exit("authcheck bench: the big message was not queued")
    with open(w("big.msg"), "wb") as f:
        f.write(big)
    per = dict(env, QUEUE_ATTRS=checked.decode())
    # The plain protocol: the message on fd 0, the envelope on fd 1 (a file
    # holding it, opened for reading as fd 1).
    with open(w("big.env"), "wb") as f:
        f.write(env_frame)
    tfile = w("big.time")
    with open(w("big.msg"), "rb") as i, open(w("big.env"), "rb") as e:
        t0 = time.monotonic()
        r = subprocess.run([TIME, "-o", tfile, "-f", "%M", os.path.join(BIN, "auth-check")], stdin=i, stdout=e,
                           stderr=subprocess.PIPE, env=per)
        big_wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit("authcheck bench: per-message big: exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
    rss_per = int(open(tfile).read().split()[-1])
    stop()
    base = rows[1][2]
    lines = ["| auth-check, %d messages of %d bytes, one session | msg/s | CPU per message (auth-check + queue-inject) | this check |"
             % (N, len(plain)), "|---|---|---|---|"]
    for i, (title, rate, cpu) in enumerate(rows):
        extra = "-"
        if i == 1:
            extra = "auth-check passing on: %.1f us" % (cpu - rows[0][2])
        elif i == 2:
            extra = "SPF + DMARC: %.1f us" % (cpu - base)
        elif i > 2:
            extra = "DKIM: %.1f us" % (cpu - rows[2][2])
        lines.append("| %s | %.0f | %.1f us | %s |" % (title, rate, cpu, extra))
    lines.append("")
    lines.append("Peak RSS with one %d MB message (signed, ed25519; /usr/bin/time, auth-check and the "
                 "queue-inject it waited for): per message %d KB (%.1f s), session mode %d KB."
                 % (BIG_MB, rss_per, big_wall, rss_session))
    lines.append("Queue on %s; DNS from a local server, cached by auth-check; BENCH_SCALE=%s."
                 % ("/dev/shm (tmpfs: no fsync cost)" if shm else "disk", "small" if SMALL else "full"))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
