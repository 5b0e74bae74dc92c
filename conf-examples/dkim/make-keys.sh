#!/bin/sh
# Make the DKIM keys of conf-examples/dkim/signing and print the DNS records
# to publish (queue-run(8), DKIM signing). Run as root in the folder of the
# table, e.g. /etc/smtpd-rs/dkim; QR_USER is the user queue-run runs as (the
# queue's owner): the keys are readable by that user only.
set -eu
QR_USER=${QR_USER:-smtpd}
umask 077
# Ed25519 (RFC 8463), PKCS#8:
openssl genpkey -algorithm ed25519 -out ed2026.pem
# RSA, 2048 bits (RFC 8301; queue-run signs with 2048, 3072 or 4096 bits,
# and refuses a 1024-bit key):
openssl genrsa -out rsa2026.pem 2048
chown "$QR_USER" ed2026.pem rsa2026.pem
chmod 600 ed2026.pem rsa2026.pem
# The TXT records, as zone-file lines: every line of the table...
DKIM_SIGN=$(pwd)/signing queue-run --dkim-record
# ... or one key:  queue-run --dkim-record ed2026.pem example.org ed2026
# Then, once the records are published (dig +short TXT ed2026._domainkey.example.org):
#   systemctl reload queue-run    (or: sv hup queue-run; kill -HUP <pid>)
