#!/usr/bin/env python3
# A small UCSPI-TLS test application for tls-wrap's tests: an SMTP-like line
# protocol on fd 0/1. STARTTLS writes "Y" (or "y" with STARTTLS-y) on $SSLCTLFD,
# reads the KEY=VALUE\0...\0\0 block, moves $SSLREADFD/$SSLWRITEFD onto 0/1 and
# discards its input buffer. ENV lists what it learned, one 250- line each.
import os, sys

def log(m):
    os.write(2, ("tls_app: " + m + "\n").encode())

buf = b""
def readline():
    global buf
    while b"\n" not in buf:
        try:
            d = os.read(0, 4096)
        except OSError:
            d = b""
        if not d:
            return None
        buf += d
        if len(buf) > 8192:
            return None
    line, buf = buf.split(b"\n", 1)
    return line.rstrip(b"\r")

def out(s):
    try:
        os.write(1, s.encode() + b"\r\n")
    except OSError:
        sys.exit(3)

facts = {}
tls = bool(os.environ.get("SSL_PROTOCOL"))
if tls:
    for k in ("SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME", "SSL_PEER_CERT_HASH", "SSL_PEER_CERT_SUBJECT"):
        if k in os.environ:
            facts[k] = os.environ[k]
hidden = [k for k in os.environ if k in ("CERTFILE", "KEYFILE", "CAFILE", "TLS_UID") or k.startswith("KEYFILE:")]
out("220 test ESMTP")
while True:
    line = readline()
    if line is None:
        log("eof")
        sys.exit(0)
    verb = line.split(b" ")[0].upper()
    if verb in (b"EHLO", b"HELO"):
        if tls or "SSLCTLFD" not in os.environ:
            out("250 test")
        else:
            out("250-test")
            out("250 STARTTLS")
    elif verb in (b"STARTTLS", b"STARTTLS-Y"):
        if tls or "SSLCTLFD" not in os.environ:
            out("454 TLS not available")
            continue
        if buf:
            out("503 pipelining after STARTTLS refused")
            continue
        out("220 ready to start TLS")
        ctl = int(os.environ["SSLCTLFD"])
        small = verb == b"STARTTLS-Y"
        os.write(ctl, b"y" if small else b"Y")
        block = b""
        if not small:
            while not block.endswith(b"\0\0") or block == b"\0":
                d = os.read(ctl, 4096)
                if not d:
                    break
                block += d
            if not block.endswith(b"\0\0"):
                log("TLS failed: EOF on control fd")
                sys.exit(4)
            for item in block[:-2].split(b"\0"):
                k, _, v = item.decode().partition("=")
                if v:
                    facts[k] = v
                else:
                    facts[k] = "(unset)"
        os.dup2(int(os.environ["SSLREADFD"]), 0)
        os.dup2(int(os.environ["SSLWRITEFD"]), 1)
        buf = b""  # CVE-2011-0411: nothing read before TLS survives
        tls = True
    elif verb == b"ENV":
        for k in sorted(facts):
            out("250-%s=%s" % (k, facts[k]))
        out("250-HIDDEN=%s" % ",".join(hidden))
        out("250-APPUID=%d" % os.getuid())
        out("250-TCPREMOTEIP=%s" % os.environ.get("TCPREMOTEIP", "?"))
        blk = [l.split()[1] for l in open("/proc/self/status").read().splitlines() if l.startswith("SigBlk:")]
        out("250-SIGBLK=%s" % (blk[0] if blk else "?"))
        try:
            st = open("/proc/%d/status" % os.getppid()).read()
            out("250-PARENTUID=%s" % [l.split()[1] for l in st.splitlines() if l.startswith("Uid:")][0])
        except OSError:
            out("250-PARENTUID=?")
        for name, path in (("KEYREAD", os.environ.get("TEST_KEYPATH", "/nonexistent")), ("PARENTMEM", "/proc/%d/mem" % os.getppid())):
            try:
                open(path, "rb").close()
                out("250-%s=open" % name)
            except OSError:
                out("250-%s=denied" % name)
        out("250 TLS=%s" % ("yes" if tls else "no"))
    elif verb == b"ECHO":
        out("250 " + line[5:].decode(errors="replace"))
    elif verb == b"BIG":
        n = int(line[4:])
        data = b"x" * n + b"\r\n"
        try:
            while data:  # a short write is not the end: write the rest
                data = data[os.write(1, data):]
        except OSError:
            sys.exit(3)
    elif verb == b"SLEEP":
        import time; time.sleep(float(line[6:]))
        out("250 slept")
    elif verb == b"QUIT":
        out("221 bye")
        sys.exit(0)
    else:
        out("500 what")
