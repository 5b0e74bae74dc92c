#!/bin/sh
# Make the DKIM keys that conf-examples/dkim/signing names and print the DNS
# records to publish (queue-run(8), DKIM signing). Run as root in the folder
# of the table, /etc/smtpd-rs/dkim; QR_USER is the user queue-run runs as
# (smtpd, the queue's owner): the keys are readable by that user only.
set -eu
QR_USER=${QR_USER:-smtpd}
umask 077
# Ed25519 (RFC 8463), PKCS#8:
openssl genpkey -algorithm ed25519 -out ed2026.pem
# RSA, 2048 bits (RFC 8301; queue-run signs with 2048, 3072 or 4096 bits
# and refuses a 1024-bit key):
openssl genrsa -out rsa2026.pem 2048 2>/dev/null
chown "$QR_USER" ed2026.pem rsa2026.pem
chmod 600 ed2026.pem rsa2026.pem
# The TXT records, as zone-file lines, of every line of the table (or of
# one key: queue-run --dkim-record ed2026.pem example.com ed2026):
DKIM_SIGN=$(pwd)/signing /usr/local/sbin/queue-run --dkim-record
# Once they are published (dig +short TXT ed2026._domainkey.example.com),
# set DKIM_SIGN in queue-run.env and restart queue-run (a SIGHUP reads a
# changed table and new keys again: systemctl reload queue-run, sv hup).
