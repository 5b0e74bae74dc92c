#!/bin/sh
# `make run`: smtpd-rs under smtpd-supervise on 127.0.0.1:2525 (PORT to change
# it), with waiting hand-off workers (-W: no fork or exec between accept and the
# greeting); RUN_UNDER=tcpserver runs it under tcpserver instead. Everything in ./var:
#   var/queue/           the queue (QUEUE_DIR); messages land in var/queue/new/
#   var/rcpthosts        accepted domains (copied from conf-examples/rcpthosts:
#                        localhost, example.com); edit it, no restart needed
#   var/local.rules.cdb  tcprules compiled from conf-examples/local.rules
#                        (smtpd-supervise reads the same .cdb)
#   var/scoreboard       smtpd-supervise's workers and sessions (-L):
#                        bin/smtpd-supervise-status var/scoreboard
#   var/metrics.prom     its figures, Prometheus text (-M); not under tcpserver
# Try it:  swaks --server 127.0.0.1:2525 --to user@example.com
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
port=${PORT:-2525}

[ -x bin/smtpd-rs ] && [ -x bin/queue-inject ] || {
	echo "run-local: bin/smtpd-rs or bin/queue-inject missing; run make first" >&2
	exit 1
}
command -v tcpserver >/dev/null && command -v tcprules >/dev/null || {
	echo "run-local: tcpserver/tcprules missing: apt-get install ucspi-tcp" >&2
	exit 1
}

mkdir -p var/queue/tmp var/queue/new
[ -f var/rcpthosts ] || cp conf-examples/rcpthosts var/rcpthosts
tcprules var/local.rules.cdb var/local.rules.tmp < conf-examples/local.rules

# The session finds queue-inject on PATH (session mode, one per session).
PATH="$top/bin:$PATH"
QUEUE_DIR="$top/var/queue"
RCPTHOSTS="$top/var/rcpthosts"
SMTPD_HOSTNAME=${SMTPD_HOSTNAME:-localhost}
DATABYTES=${DATABYTES:-10485760}
export PATH QUEUE_DIR RCPTHOSTS SMTPD_HOSTNAME DATABYTES
# A QMAILQUEUE left in the caller's environment would switch off session mode.
unset QMAILQUEUE RELAYCLIENT || true

if [ "${RUN_UNDER:-smtpd-supervise}" = tcpserver ]; then
	echo "run-local: smtpd-rs under tcpserver on 127.0.0.1:$port, queue $QUEUE_DIR, Ctrl-C to stop" >&2
	# -v log connections, -R no ident, -H no reverse DNS, -l 0 local name "0",
	# -x per-address rules; the session's log lines follow tcpserver's on stderr.
	exec tcpserver -v -R -H -l 0 -x var/local.rules.cdb 127.0.0.1 "$port" "$top/bin/smtpd-rs"
fi
[ -x bin/smtpd-supervise ] || { echo "run-local: bin/smtpd-supervise missing; run make first" >&2; exit 1; }
echo "run-local: smtpd-rs under smtpd-supervise on 127.0.0.1:$port, queue $QUEUE_DIR, Ctrl-C to stop" >&2
# -W hand-off workers (each already smtpd-rs with its queue-inject started),
# -m 100 sessions per worker (see smtpd-supervise(8) for the trade-off),
# -x per-address rules, -L the scoreboard, -M the metrics; one log line per
# event on stderr.
exec bin/smtpd-supervise -W -m 100 -x var/local.rules.cdb -L var/scoreboard -M var/metrics.prom \
	127.0.0.1 "$port" "$top/bin/smtpd-rs"
