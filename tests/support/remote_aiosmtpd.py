"""A sink for smtp-remote's tests: aiosmtpd on 127.0.0.1, any port.

Prints the port on stdout, then stores each message as OUT/<n>.msg (the DATA
bytes as aiosmtpd received them, dot-unstuffed) and OUT/<n>.env (envelope,
MAIL parameters, TLS and AUTH state). Ends when stdin closes or after 60 s.
Run with Debian's /usr/bin/python3 (package python3-aiosmtpd).
"""
import argparse, asyncio, os, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, out):
        self.out, self.n = out, 0

    async def handle_DATA(self, server, session, env):
        self.n += 1
        p = os.path.join(self.out, str(self.n))
        with open(p + ".msg", "wb") as f:
            f.write(env.original_content)
        lines = ["from %s" % env.mail_from, "mailopts %s" % " ".join(env.mail_options)]
        lines += ["to %s" % r for r in env.rcpt_tos]
        lines += ["tls %s" % (session.ssl is not None), "auth %s" % bool(session.authenticated)]
        with open(p + ".env", "w") as f:
            f.write("\n".join(lines) + "\n")
        return "250 2.0.0 stored %d" % self.n


def checker(user, pw):
    def check(server, session, envelope, mechanism, data):
        if isinstance(data, LoginPassword) and data.login == user.encode() and data.password == pw.encode():
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)
    return check


async def main():
    a = argparse.ArgumentParser()
    a.add_argument("--out", required=True)
    a.add_argument("--cert")
    a.add_argument("--key")
    a.add_argument("--auth", help="user:password")
    o = a.parse_args()
    ctx = None
    if o.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(o.cert, o.key)
    kw = {}
    if o.auth:
        u, p = o.auth.split(":", 1)
        kw.update(authenticator=checker(u, p), auth_require_tls=True, auth_required=True)
    h = Handler(o.out)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(h, hostname="sink.test", tls_context=ctx, decode_data=False, enable_SMTPUTF8=True, **kw),
        "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=60)
    srv.close()


asyncio.run(main())
