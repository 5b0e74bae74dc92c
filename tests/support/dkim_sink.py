"""An SMTP sink for the DKIM signing tests (Debian's python3-aiosmtpd).

usage: /usr/bin/python3 dkim_sink.py DIR
Listens on 127.0.0.1 (a free port, written to DIR/port once listening) and
stores each accepted message as DIR/msg.<n> (the DATA content exactly as
received: dot-unstuffed, CR LF line ends) with DIR/env.<n> (MAIL FROM, its
parameters, then one RCPT TO per line). SIZE 1 GiB, and lines of any
length, so that what smtp-remote sends arrives whole. A recipient whose
local part starts with `grey` gets 451 4.7.1 the first time, then 250.
Ends when stdin closes (or when killed).
"""
import asyncio, os, socket, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

DIR = sys.argv[1]
seen = set()
count = [0]


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].startswith("grey") and address not in seen:
            seen.add(address)
            return "451 4.7.1 greylisted, try again"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server, session, envelope):
        count[0] += 1
        n = "%06d" % count[0]
        with open(os.path.join(DIR, "env." + n), "w") as f:
            f.write(envelope.mail_from + "\n" + " ".join(envelope.mail_options) + "\n")
            f.write("".join(r + "\n" for r in envelope.rcpt_tos))
        with open(os.path.join(DIR, "msg.tmp"), "wb") as f:
            f.write(envelope.original_content)
        os.rename(os.path.join(DIR, "msg.tmp"), os.path.join(DIR, "msg." + n))
        return "250 2.0.0 ok: stored %s" % n


class Unlimited(SMTP):
    line_length_limit = 1 << 20


class Sink(Controller):
    def factory(self):
        return Unlimited(self.handler, data_size_limit=1 << 30, decode_data=False, hostname="sink.test")


s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
c = Sink(Handler(), hostname="127.0.0.1", port=port)
c.start()
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(port))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
try:
    sys.stdin.read()
finally:
    c.stop()
