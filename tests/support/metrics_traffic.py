#!/usr/bin/python3
"""Known traffic for tests/metrics_prometheus.rs, with Python's smtplib as
the client: N messages accepted, M sessions whose recipient is refused by
policy, K sessions in TLS (STARTTLS; the first also fails AUTH once), and
one session whose TLS handshake fails. Every session but the last ends
with QUIT. Usage: metrics_traffic.py port N M K
"""
import smtplib
import socket
import ssl
import sys

port, n, m, k = (int(a) for a in sys.argv[1:5])
host = "127.0.0.1"


def tls_context():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


for i in range(n):
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.ehlo("client.test")
        s.sendmail("alice@client.test", ["user@example.com"], f"Subject: {i}\r\n\r\nmessage {i}\r\n")

for i in range(m):
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("alice@client.test")
        code, _ = s.rcpt("someone@elsewhere.test")
        assert code == 553, code
        s.rset()

for i in range(k):
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.ehlo("client.test")
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        if i == 0:
            # One AUTH PLAIN, not smtplib's login(), which tries every
            # mechanism offered in turn.
            s.user, s.password = "nobody", "wrong"
            try:
                s.auth("PLAIN", s.auth_plain)
                raise SystemExit("AUTH succeeded")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535, e

# STARTTLS accepted, then not TLS at all: the handshake fails.
sock = socket.create_connection((host, port), timeout=30)
f = sock.makefile("rb")
f.readline()
sock.sendall(b"EHLO client.test\r\n")
while True:
    line = f.readline()
    if not line or line[3:4] == b" ":
        break
sock.sendall(b"STARTTLS\r\n")
assert f.readline().startswith(b"220")
sock.sendall(b"this is not a TLS ClientHello\r\n")
sock.settimeout(30)
try:
    while sock.recv(4096):
        pass
except OSError:
    pass
sock.close()
print("traffic sent")
