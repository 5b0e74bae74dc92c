#!/bin/sh
# make bench: every benchmark of the suite, one after the other, each side by
# side with its anchor in the same run:
#   bench.py   smtpd-rs + queue-inject (tcpserver, smtpd-supervise), a private
#              Postfix and smtp-sink, driven by smtp-source (scenarios a1 a20 b c);
#              CPU per message, latency, memory per session, and the disk's
#              durable-write limit (durable.py) in the same run
#   tls.sh     implicit-TLS handshakes/s: tls-wrap + smtpd-rs against stunnel4
#   remote.sh  smtp-remote against msmtp, one process per message, to smtp-sink
#   relay.sh   the whole relay chain against a private Postfix relay, to smtp-sink
#   relay50    the same with 50 destination domains, each its own route (and
#              Postfix transport), over 5 sinks
#   authcheck.py  auth-check alone: rate and CPU per check through its session
#              interface (pre-signed rsa-sha256 / ed25519-sha256), peak RSS with
#              a 100 MB message (bench.py's smtpd-rs-authcheck puts it in the chain)
#   dkim       relay.sh's chain (ours only) without DKIM signing, with Ed25519,
#              with RSA-2048, and queue-run's peak RSS signing a 100 MB message
#   floor      the machine's floor (floor.sh): a fork, an exec, a CPUID, a page
#              fault and a durable write, with nothing of the suite in the way
# BENCH_ONLY="bench tls remote relay relay50 authcheck dkim floor" picks some; BENCH_SCALE=small makes each
# a quick check that it works. Output: the tables on stdout.
set -eu
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
[ -x "$py" ] || py=python3
only=${BENCH_ONLY:-"bench tls remote relay relay50 authcheck dkim floor"}
# pick SMALL FULL: the size for this run
pick() { if [ "${BENCH_SCALE:-full}" = small ]; then echo "$1"; else echo "$2"; fi; }
rc=0
for b in $only; do
	echo "## $b"
	case $b in
	bench)  "$py" tests/bench/bench.py || rc=1 ;;
	tls)    sh tests/bench/tls.sh "$(pick 1 10)" || rc=1 ;;
	remote) sh tests/bench/remote.sh "$(pick 20 1000)" || rc=1 ;;
	relay)  sh tests/bench/relay.sh "$(pick 20 2000)" "$(pick 2 20)" || rc=1 ;;
	relay50) RELAY_DOMAINS=50 RELAY_SINKS=5 sh tests/bench/relay.sh "$(pick 100 2000)" "$(pick 2 20)" || rc=1 ;;
	authcheck) "$py" tests/bench/authcheck.py || rc=1 ;;
	dkim)   RELAY_ONLY=ours RELAY_DKIM="none ed25519 rsa none ed25519 rsa none ed25519 rsa" RELAY_DKIM_BIG="$(pick 10 100)" \
	        sh tests/bench/relay.sh "$(pick 20 2000)" "$(pick 2 20)" || rc=1 ;;
	floor)  sh tests/bench/floor.sh || rc=1 ;;
	*) echo "run.sh: unknown benchmark $b" >&2; rc=1 ;;
	esac
	echo
done
exit $rc
