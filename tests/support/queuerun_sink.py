"""An SMTP sink for queue-run's end-to-end tests (Debian's python3-aiosmtpd).

usage: /usr/bin/python3 queuerun_sink.py DIR
Listens on 127.0.0.1 (a port that was free, written to DIR/port once listening) and
stores each accepted message as DIR/msg.<n> (the DATA content, exactly as
received, dot-unstuffed, CRLF line ends) with DIR/env.<n> (MAIL FROM, then
one RCPT TO per line), and appends the client's port to DIR/peers (one
line per message: the connection it came over). Per recipient, by local part:
  fail...  -> 550 5.1.1 at RCPT
  grey...  -> 451 4.7.1 at RCPT the first time, then 250
  slow...  -> 250, and the reply to DATA comes 3 s late
anything else -> 250.
"""
import asyncio, os, sys
from aiosmtpd.controller import Controller

DIR = sys.argv[1]
seen = set()
count = [0]

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("fail"):
            return "550 5.1.1 <%s>: no such user" % address
        if local.startswith("grey") and address not in seen:
            seen.add(address)
            return "451 4.7.1 greylisted, try again"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 ok"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("slow") for r in envelope.rcpt_tos):
            await asyncio.sleep(3)
        count[0] += 1
        n = "%06d.%d" % (count[0], os.getpid())
        with open(os.path.join(DIR, "msg.tmp"), "wb") as f:
            f.write(envelope.original_content)
        with open(os.path.join(DIR, "env." + n), "w") as f:
            f.write(envelope.mail_from + "\n" + "".join(r + "\n" for r in envelope.rcpt_tos))
        with open(os.path.join(DIR, "peers"), "a") as f:
            f.write("%s\n" % session.peer[1])
        os.rename(os.path.join(DIR, "msg.tmp"), os.path.join(DIR, "msg." + n))
        return "250 2.0.0 ok: queued as %s" % n

import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
c = Controller(Handler(), hostname="127.0.0.1", port=port, decode_data=False)
c.start()
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(port))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
try:
    sys.stdin.read()  # until the test closes our stdin (or kills us)
finally:
    c.stop()
