#!/usr/bin/python3
"""OpenDKIM's opendkim-testmsg (Debian opendkim-tools) as a peer of
tests/dkim_peers.rs, with a fake DNS server serving the test's key records.

    unshare --user --map-root-user --mount --net dkim_opendkim.py SCRATCH RECORDS < JOBS

opendkim-testmsg has no option for a key file when it verifies: libopendkim
asks the system resolver (res_query, /etc/resolv.conf). So this runs in its
own user, mount and network namespaces (nothing outside them changes): it
brings up the namespace's loopback, serves RECORDS on 127.0.0.1:53 (UDP and
TCP) and bind-mounts SCRATCH/resolv.conf, naming that server, over
/etc/resolv.conf.

RECORDS: one record a line, `name<TAB>string<TAB>string...` (the TXT
record's character-strings). JOBS, tab-separated, one answer line each:
  verify PATH                          -> `pass` or `fail STDERR`
  sign PATH OUT SELECTOR DOMAIN KEYFILE -> `signed` (OUT: the signed message)
"""
import fcntl
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
    flags = struct.unpack("16sH14x", ifr)[1]
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    s.close()


def load(path):
    zone = {}
    with open(path, "rb") as f:
        for line in f:
            parts = line.rstrip(b"\n").split(b"\t")
            zone[parts[0].lower().rstrip(b".")] = parts[1:]
    return zone


def answer(zone, wire):
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA
    question = q.question[0]
    name = question.name.to_text(omit_final_dot=True).lower().encode()
    strings = zone.get(name)
    if strings is None:
        r.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype == dns.rdatatype.TXT:
        text = " ".join('"%s"' % s.decode() for s in strings)
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text)
        r.answer.append(dns.rrset.from_rdata(question.name, 60, rd))
    return r.to_wire(max_size=65535)


def serve(zone):
    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            sock.sendto(answer(zone, data), self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self):
            n = struct.unpack("!H", self.rfile.read(2))[0]
            out = answer(zone, self.rfile.read(n))
            self.wfile.write(struct.pack("!H", len(out)) + out)

    for cls, handler in ((socketserver.ThreadingUDPServer, Udp), (socketserver.ThreadingTCPServer, Tcp)):
        srv = cls(("127.0.0.1", 53), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()


def main():
    scratch, records = sys.argv[1], sys.argv[2]
    loopback_up()
    serve(load(records))
    conf = os.path.join(scratch, "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1\noptions edns0 timeout:2 attempts:1\n")
    subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True)
    tmp = os.path.join(scratch, "opendkim-tmp")
    os.makedirs(tmp, exist_ok=True)
    for line in sys.stdin:
        f = line.rstrip("\n").split("\t")
        if f[0] == "verify":
            with open(f[1], "rb") as m:
                p = subprocess.run(["opendkim-testmsg", "-t", tmp], stdin=m, capture_output=True, timeout=30)
            if p.returncode == 0:
                print("pass", flush=True)
            else:
                print("fail %d %s" % (p.returncode, p.stderr.decode(errors="replace").strip().replace("\n", " ")), flush=True)
        elif f[0] == "sign":
            path, out, sel, dom, keyfile = f[1:6]
            with open(path, "rb") as m, open(out, "wb") as o:
                p = subprocess.run(["opendkim-testmsg", "-C", "-t", tmp, "-d", dom, "-s", sel, "-k", keyfile],
                                   stdin=m, stdout=o, stderr=subprocess.PIPE, timeout=30)
            print("signed" if p.returncode == 0 else "error " + p.stderr.decode(errors="replace").strip(), flush=True)
        else:
            print("error unknown job", flush=True)


main()
