#!/usr/bin/python3
# A tiny checkpassword program for the AUTH tests (djb's interface):
# reads user\0password-or-digest\0challenge\0 from fd 3; users alice/s3cret
# and bob/b0b; "tempfail" exits 111; a CRAM-MD5 digest (challenge not empty)
# is checked as HMAC-MD5(password, challenge). On success it execs its
# arguments (checkpassword ... true).
import hmac, hashlib, os, sys
USERS = {b"alice": b"s3cret", b"bob": b"b0b"}
try:
    data = b""
    while len(data) < 4096:
        d = os.read(3, 4096)
        if not d:
            break
        data += d
except OSError:
    sys.exit(2)
parts = data.split(b"\0")
if len(parts) < 3:
    sys.exit(2)
user, secret, chal = parts[0], parts[1], parts[2]
if user == b"tempfail":
    sys.exit(111)
if user == b"slow":
    import time; time.sleep(30)
pw = USERS.get(user)
if pw is None:
    sys.exit(1)
if chal:
    ok = hmac.compare_digest(hmac.new(pw, chal, hashlib.md5).hexdigest().encode(), secret)
else:
    ok = hmac.compare_digest(pw, secret)
if not ok:
    sys.exit(1)
if len(sys.argv) > 1:
    os.execvp(sys.argv[1], sys.argv[1:])
sys.exit(0)
