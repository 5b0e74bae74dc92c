"""A small authoritative DNS server on a loopback UDP port for the benchmarks
(tests/bench/bench.py, tests/bench/authcheck.py): TXT and A records from a
table, NXDOMAIN for other names, NODATA (with an SOA, so that negative
answers are cached) for other types of a known name. Debian python3-dnspython.

    port, stop = serve({"example.org": [("TXT", ["v=spf1 -all"])], ...})
"""

import socket
import threading

try:
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
except ImportError:  # reported by the caller
    dns = None


def available():
    return dns is not None


def _answer(zone, wire):
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    question = q.question[0]
    name = question.name.to_text(omit_final_dot=True).lower()
    records = zone.get(name)
    if records is None:
        r.set_rcode(dns.rcode.NXDOMAIN)
    else:
        for rtype, value in records:
            if dns.rdatatype.from_text(rtype) != question.rdtype:
                continue
            if rtype == "TXT":
                text = " ".join('"%s"' % s for s in value)
            else:
                text = value
            rd = dns.rdata.from_text(dns.rdataclass.IN, question.rdtype, text)
            r.answer.append(dns.rrset.from_rdata(question.name, 300, rd))
    if not r.answer:
        soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, "ns.invalid. h.invalid. 1 3600 600 86400 300")
        r.authority.append(dns.rrset.from_rdata(dns.name.from_text(name.split(".", 1)[-1] or "."), 300, soa))
    return r.to_wire(max_size=65535)


def serve(zone):
    """Serve `zone` ({name: [(type, value)]}, TXT values a list of strings)
    on 127.0.0.1; returns (port, stop function)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    done = threading.Event()

    def loop():
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                sock.sendto(_answer(zone, data), peer)
            except Exception:  # a malformed question: no answer
                pass

    threading.Thread(target=loop, daemon=True).start()

    def stop():
        done.set()
        sock.close()

    return sock.getsockname()[1], stop
