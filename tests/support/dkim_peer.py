#!/usr/bin/python3
"""dkimpy (Debian python3-dkim) as a peer of tests/dkim_peers.rs.

    dkim_peer.py RECORDS < JOBS

RECORDS: one key record a line, `name<TAB>text` (the name without its final
dot); dkimpy looks keys up there through dnsfunc, never in real DNS.
JOBS, one a line, tab-separated; one answer line each, in order:
  verify PATH INDEX
      -> `pass` or `fail REASON` (dkim.DKIM(...).verify of signature INDEX)
  sign PATH OUT SELECTOR DOMAIN KEYFILE ALGORITHM HCANON/BCANON
      -> `signed BH` (the bh= of the new signature); OUT gets the signed message
Anything unexpected -> `error ...`.
"""
import base64
import re
import sys

import dkim
import dkim.util


def ed25519_seed(pem):
    """dkimpy takes an Ed25519 key as the base64 of its 32-octet seed: the
    last 32 octets of the PKCS#8 DER that `openssl genpkey` writes."""
    body = b"".join(l for l in pem.splitlines() if l and not l.startswith(b"-----"))
    return base64.b64encode(base64.b64decode(body)[-32:])


def main():
    records = {}
    with open(sys.argv[1], "rb") as f:
        for line in f:
            name, text = line.rstrip(b"\n").split(b"\t", 1)
            records[name.lower()] = text

    def dnsfunc(name, timeout=5):
        return records.get(name.rstrip(b".").lower())

    for line in sys.stdin.buffer:
        f = line.rstrip(b"\n").split(b"\t")
        try:
            if f[0] == b"verify":
                msg = open(f[1], "rb").read()
                d = dkim.DKIM(msg, minkey=1024)
                try:
                    ok = d.verify(idx=int(f[2]), dnsfunc=dnsfunc)
                    print("pass" if ok else "fail (verify returned False)", flush=True)
                except dkim.ValidationError as e:  # a body hash mismatch is raised, not returned
                    print("fail " + repr(e).replace("\n", " "), flush=True)
            elif f[0] == b"sign":
                path, out, sel, dom, keyfile, alg, canon = f[1:8]
                msg = open(path, "rb").read()
                key = open(keyfile, "rb").read()
                if alg == b"ed25519-sha256":
                    key = ed25519_seed(key)
                h, b = canon.split(b"/")
                sig = dkim.sign(msg, sel, dom, key, canonicalize=(h, b), signature_algorithm=alg)
                with open(out, "wb") as o:
                    o.write(sig + msg)
                tags = dkim.util.parse_tag_value(sig.split(b":", 1)[1])
                print("signed " + re.sub(rb"\s", b"", tags[b"bh"]).decode(), flush=True)
            else:
                print("error unknown job %r" % (f[0],), flush=True)
        except Exception as e:  # one line per job, whatever happens
            print("error " + repr(e).replace("\n", " "), flush=True)


main()
