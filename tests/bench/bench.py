#!/usr/bin/python3
"""make bench: smtp-source against three receivers side by side, in one run.

Receivers (BENCH_SYSTEMS, all by default):
  smtpd-rs         smtpd-rs under tcpserver, queue-inject in session mode (fsync'd)
  smtpd-rs-permsg  the same with QMAILQUEUE=queue-inject: one process per message
  smtpd-rs-authcheck  smtpd-rs with auth-check in the chain (QUEUE_SESSION_PROGRAM):
                   SPF and DMARC for every message, the records served by a local
                   DNS server (tests/bench/dnsserver.py) and cached per session
  supervise-m1     smtpd-rs under smtpd-supervise -W (hand-off workers, already
                   smtpd-rs with queue-inject started), one session per process
  supervise-m100   the same, each worker serving up to 100 sessions in turn
  supervise-fork   smtpd-supervise -W -F: each worker a template forking a fresh
                   smtpd-rs (with its own queue-inject) per session, no exec
  postfix          a private Postfix instance on a loopback port that keeps what
                   it receives in its own queue (no qmgr: nothing ever leaves)
  smtp-sink        Postfix's smtp-sink: no disk, the protocol-only upper bound

Scenarios (BENCH_SCENARIOS, all by default), 1 KB messages unless said:
  a1   one message per connection, 1 session
  a20  one message per connection, 20 sessions
  b    about 100 messages per connection, 20 sessions
  c    1 MB messages on kept connections, 4 sessions

Each cell is the median of BENCH_RUNS (3) runs; after every run the queue
must hold exactly the messages sent. A second table gives each rate as a
multiple of Postfix's and the CPU time of each receiver's process tree per
message (a cgroup around it: needs root). Then, for each receiver: connect
to greeting latency (BENCH_LATENCY=0: not), the memory of one session with
20 alive (BENCH_MEMORY=0: not), and the disk's durable-write limit with 1
and 20 writers (tests/bench/durable.py; BENCH_DURABLE=0: not). Peak RSS of a
smtpd-rs session and of queue-inject is measured for scenario c in one
extra run (/usr/bin/time).
Tools: smtp-source, smtp-sink, postfix, tcpserver, /usr/bin/time, and
python3-dnspython for the DNS server of smtpd-rs-authcheck.

Sizes: BENCH_SCALE=small (a one-minute check) or full (default); each count
can be set alone: BENCH_A1_MSGS, BENCH_A20_MSGS, BENCH_B_PER_CONN,
BENCH_C_PER_CONN, BENCH_MSG_SIZE (1024), BENCH_BIG_SIZE (1048576).
Where: BENCH_DIR (default ./var/bench, on the project's disk: /tmp may be a
tmpfs, where fsync costs nothing), BENCH_BIN (default ./bin).
BENCH_KEEP_TRASH=1 leaves the cleared queue files in BENCH_DIR/run-*/trash
(see discard() below), for runs in a row that must not pay for each other's
deletions.
Output: the markdown table on stdout, and in BENCH_DIR/results.md.
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCALE = os.environ.get("BENCH_SCALE", "full")
if SCALE not in ("small", "full"):
    sys.exit("bench: BENCH_SCALE must be small or full")
SMALL = SCALE == "small"


def env_int(name, full, small):
    v = os.environ.get(name)
    return int(v) if v else (small if SMALL else full)


RUNS = env_int("BENCH_RUNS", 3, 3)
SIZE = env_int("BENCH_MSG_SIZE", 1024, 1024)
BIG = env_int("BENCH_BIG_SIZE", 1048576, 1048576)
A1 = env_int("BENCH_A1_MSGS", 500, 20)
A20 = env_int("BENCH_A20_MSGS", 2000, 40)
B_PER = env_int("BENCH_B_PER_CONN", 100, 5)
C_PER = env_int("BENCH_C_PER_CONN", 25, 2)
TIMEOUT = env_int("BENCH_TIMEOUT", 1800, 120)

# name, title, sessions, total messages, keep connections (-d), size
SCENARIOS = {
    "a1": ("a1: 1 msg/conn, 1 session", 1, A1, False, SIZE),
    "a20": ("a20: 1 msg/conn, 20 sessions", 20, A20, False, SIZE),
    "b": ("b: ~%d msgs/conn, 20 sessions" % B_PER, 20, 20 * B_PER, True, SIZE),
    "c": ("c: %d KB msgs, kept conns, 4 sessions" % (BIG // 1024), 4, 4 * C_PER, True, BIG),
}
SYSTEMS = {
    "smtpd-rs": "smtpd-rs + queue-inject (session)",
    "smtpd-rs-permsg": "smtpd-rs, queue-inject per message",
    "smtpd-rs-authcheck": "smtpd-rs + auth-check + queue-inject (session)",
    "supervise-m1": "smtpd-supervise -W -m 1",
    "supervise-m100": "smtpd-supervise -W -m 100",
    "supervise-fork": "smtpd-supervise -W -F (a process per session)",
    "postfix": "Postfix (own queue)",
    "smtp-sink": "smtp-sink (no disk)",
}

want_scen = os.environ.get("BENCH_SCENARIOS", "a1 a20 b c").split()
want_sys = os.environ.get("BENCH_SYSTEMS", " ".join(SYSTEMS)).split()
for s in want_scen:
    if s not in SCENARIOS:
        sys.exit("bench: unknown scenario %s (a1 a20 b c)" % s)
for s in want_sys:
    if s not in SYSTEMS:
        sys.exit("bench: unknown system %s (%s)" % (s, " ".join(SYSTEMS)))

BIN = os.path.abspath(os.environ.get("BENCH_BIN", os.path.join(TOP, "bin")))
BASE = os.path.abspath(os.environ.get("BENCH_DIR", os.path.join(TOP, "var", "bench")))


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def need(path, package):
    found = shutil.which(path) or (os.access(path, os.X_OK) and path)
    if not found:
        sys.exit("bench: %s missing: apt-get install %s" % (path, package))
    return found


SMTP_SOURCE = need("/usr/sbin/smtp-source", "postfix")
TIME = need("/usr/bin/time", "time")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d" % port)


# Where cleared queue files go until the end of the run (see discard).
TRASH = None


def discard(paths):
    """Clear queue files between runs by renaming them into TRASH, removed
    only when the whole run is over. Unlinking them would make every later
    file creation slower on a file system such as ext4 without a journal,
    whose inode allocator steps over each inode freed in the last minutes
    (recently_deleted): measured here, half of a receiver's CPU went there
    after a few runs, for Postfix and for us alike. Renaming frees nothing."""
    for i, p in enumerate(paths):
        os.rename(p, os.path.join(TRASH, "%d.%d.%s" % (time.monotonic_ns(), i, os.path.basename(p))))


def files_in(d):
    try:
        return [os.path.join(d, n) for n in os.listdir(d)]
    except FileNotFoundError:
        return []


class CpuGroup:
    """The CPU time of a receiver's whole process tree: a cgroup (v1 cpuacct,
    else v2) that its first process enters before exec, so that everything it
    starts is counted, in user and kernel mode (not the kernel's own threads:
    the journal's commits run in jbd2). None of it when cgroups cannot be
    made (not root): then no CPU figures."""

    def __init__(self, name):
        self.path = None
        self.v2 = False
        tag = "smtpd-bench-%d-%s" % (os.getpid(), name)
        for base, v2 in (("/sys/fs/cgroup/cpuacct", False), ("/sys/fs/cgroup/unified", True), ("/sys/fs/cgroup", True)):
            probe = "cpu.stat" if v2 else "cpuacct.usage"
            if not os.path.exists(os.path.join(base, probe)) and not os.path.exists(os.path.join(base, "cgroup.procs")):
                continue
            try:
                os.makedirs(os.path.join(base, tag), exist_ok=True)
            except OSError:
                continue
            self.path, self.v2 = os.path.join(base, tag), v2
            if self.usage() is None:
                self.remove()
                continue
            break

    def enter(self):
        """For preexec_fn: move the calling (child) process in."""
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def usage(self):
        """CPU seconds used so far by the tree, or None."""
        if not self.path:
            return None
        try:
            if not self.v2:
                with open(os.path.join(self.path, "cpuacct.usage")) as f:
                    return int(f.read()) / 1e9
            with open(os.path.join(self.path, "cpu.stat")) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "usage_usec":
                        return int(v) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def remove(self):
        if not self.path:
            return
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        self.path = None


class Receiver:
    port = 0
    counts = True
    cpu = None

    def cpu_used(self):
        return self.cpu.usage() if self.cpu else None

    def clear(self):
        pass

    def count(self):
        return None

    def stop(self):
        pass


class Tcpserver(Receiver):
    """smtpd-rs under tcpserver -1 (it prints the port it bound)."""

    def __init__(self, root, name, permsg, rss=False, max_use=0, fork=False, authcheck=False):
        if not max_use:
            need("tcpserver", "ucspi-tcp")
        for b in ("smtpd-rs", "queue-inject") + (("smtpd-supervise",) if max_use else ()) + (("auth-check",) if authcheck else ()):
            if not os.access(os.path.join(BIN, b), os.X_OK):
                sys.exit("bench: %s/%s missing: run make" % (BIN, b))
        self.dir = os.path.join(root, name)
        self.queue = os.path.join(self.dir, "queue")
        for d in ("tmp", "new"):
            os.makedirs(os.path.join(self.queue, d), exist_ok=True)
        with open(os.path.join(self.dir, "rcpthosts"), "w") as f:
            f.write("example.com\n")
        bindir = BIN
        prog = [os.path.join(BIN, "smtpd-rs")]
        self.rss_files = None
        if rss:
            # A folder with a copy of smtpd-rs and a queue-inject wrapper, so
            # that both "queue-inject from PATH" and "next to its own binary"
            # find the wrapper; /usr/bin/time appends each process's peak RSS.
            bindir = os.path.join(self.dir, "rssbin")
            os.makedirs(bindir, exist_ok=True)
            shutil.copy2(os.path.join(BIN, "smtpd-rs"), bindir)
            self.rss_files = (os.path.join(self.dir, "rss-smtpd"), os.path.join(self.dir, "rss-queue"))
            for f in self.rss_files:
                open(f, "w").close()
            w = os.path.join(bindir, "queue-inject")
            with open(w, "w") as f:
                f.write('#!/bin/sh\nexec %s -a -o %s -f %%M %s "$@"\n'
                        % (TIME, self.rss_files[1], os.path.join(BIN, "queue-inject")))
            os.chmod(w, 0o755)
            prog = [TIME, "-a", "-o", self.rss_files[0], "-f", "%M", os.path.join(bindir, "smtpd-rs")]
        env = {
            "PATH": bindir + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "QUEUE_DIR": self.queue,
            "RCPTHOSTS": os.path.join(self.dir, "rcpthosts"),
            "SMTPD_HOSTNAME": "bench.invalid",
            "DATABYTES": str(max(BIG, SIZE) * 4),
            "SMTPD_TIMEOUT": "120",
            "LANG": "C",
        }
        if permsg:
            env["QMAILQUEUE"] = os.path.join(bindir, "queue-inject")
        if authcheck:
            env["QUEUE_SESSION_PROGRAM"] = os.path.join(BIN, "auth-check")
            env["DNS_SERVER"] = "127.0.0.1:%d" % bench_dns()
            env["PUBLIC_SUFFIX_LIST"] = os.path.join(TOP, "tests", "data", "psl", "public_suffix_list.dat")
        self.log = open(os.path.join(self.dir, "smtpd-rs.log"), "ab")
        if max_use:
            # -C 100: every client is 127.0.0.1, and smtp-source reconnects
            # before the supervisor has reaped the previous session.
            # -w: waiting workers (BENCH_WORKERS, default 4: twice the
            # processors here), so that a worker started to replace one that
            # ended is not the one the next connection has to wait for.
            server = [os.path.join(BIN, "smtpd-supervise"), "-1", "-W"] + (["-F"] if fork else []) + ["-m", str(max_use),
                      "-w", os.environ.get("BENCH_WORKERS", "4"),
                      "-c", "100", "-C", "100", "127.0.0.1", "0"]
        else:
            server = ["tcpserver", "-1", "-R", "-H", "-l", "0", "-c", "100", "127.0.0.1", "0"]
        self.cpu = CpuGroup(name)
        self.proc = subprocess.Popen(
            server + prog,
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
            start_new_session=True, preexec_fn=self.cpu.enter)
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("tcpserver printed no port")
        self.port = int(line)

    def clear(self):
        discard(files_in(os.path.join(self.queue, "new")))

    def count(self):
        return len(files_in(os.path.join(self.queue, "new")))

    def rss(self):
        out = []
        for f in self.rss_files:
            with open(f) as fh:
                v = [int(x) for x in fh.read().split() if x.isdigit()]
            out.append(max(v) if v else None)
        return out

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            time.sleep(0.2)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
        self.cpu.remove()


POSTFIX_MAIN = """\
# A private, receive-only Postfix for the benchmark: its own config, queue
# and data folders under {d}; bound to 127.0.0.1:{port} only; no qmgr, no
# pickup and no delivery agents in master.cf, so nothing ever leaves its
# queue (messages stay in incoming/). Never the system instance.
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.invalid
mydomain = invalid
myorigin = bench.invalid
mydestination =
relayhost = [192.0.2.1]
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions =
smtpd_peername_lookup = no
# No qmgr takes tokens, so in_flow_delay would stall every message 1 s.
in_flow_delay = 0
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
message_size_limit = {limit}
default_process_limit = 100
"""

POSTFIX_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
rewrite   unix  - - n - - trivial-rewrite
anvil     unix  - - n - 1 anvil
postlog   unix-dgram n - n - 1 postlogd
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
"""


class Postfix(Receiver):
    def __init__(self, root):
        need("/usr/sbin/postfix", "postfix")
        if os.geteuid() != 0:
            raise RuntimeError("a private Postfix instance needs root")
        self.dir = os.path.join(root, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN.format(d=self.dir, port=self.port, limit=max(BIG, SIZE) * 4))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(POSTFIX_MASTER.format(port=self.port))
        self.cpu = CpuGroup("postfix")
        self.postfix("start")
        wait_port(self.port)

    def postfix(self, cmd):
        # master and every daemon it starts stay in the CPU group of the
        # command that started it.
        r = subprocess.run(["/usr/sbin/postfix", "-c", self.etc, cmd], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60,
                           preexec_fn=self.cpu.enter if cmd == "start" else None)
        if r.returncode != 0 and cmd == "start":
            raise RuntimeError("postfix -c %s start failed; see %s/maillog" % (self.etc, self.dir))

    def queue_files(self):
        # Complete queue files have the owner x bit (Postfix sets it last).
        out = []
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for top, _, names in os.walk(os.path.join(self.dir, "queue", sub)):
                out += [os.path.join(top, n) for n in names]
        return out

    def clear(self):
        discard(self.queue_files())

    def count(self):
        return sum(1 for f in self.queue_files() if os.stat(f).st_mode & 0o100)

    def stop(self):
        self.postfix("stop")
        # master exits within a few seconds; wait for its pid file to go.
        pid = os.path.join(self.dir, "queue", "pid", "master.pid")
        for _ in range(100):
            if not os.path.exists(pid):
                break
            time.sleep(0.1)
        self.cpu.remove()


class Sink(Receiver):
    counts = False

    def __init__(self, root):
        prog = need("/usr/sbin/smtp-sink", "postfix")
        self.port = free_port()
        args = [prog]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        self.cpu = CpuGroup("smtp-sink")
        self.proc = subprocess.Popen(args + ["127.0.0.1:%d" % self.port, "256"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=self.cpu.enter)
        wait_port(self.port)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.cpu.remove()


_dns = []


def bench_dns():
    """The DNS server for auth-check: SPF and DMARC of smtp-source's sender
    and HELO name (p=none: every message is queued). Started once."""
    if not _dns:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import dnsserver
        if not dnsserver.available():
            raise RuntimeError("python3-dnspython missing: apt-get install python3-dnspython")
        port, stop = dnsserver.serve({
            "bench.invalid": [("TXT", ["v=spf1 ip4:127.0.0.1 -all"])],
            "client.bench.invalid": [("TXT", ["v=spf1 ip4:127.0.0.1 -all"])],
            "_dmarc.bench.invalid": [("TXT", ["v=DMARC1; p=none"])],
        })
        _dns.append((port, stop))
    return _dns[0][0]


def start(name, root):
    if name == "smtpd-rs":
        return Tcpserver(root, name, permsg=False)
    if name == "smtpd-rs-authcheck":
        return Tcpserver(root, name, permsg=False, authcheck=True)
    if name == "smtpd-rs-permsg":
        return Tcpserver(root, name, permsg=True)
    if name == "supervise-m1":
        return Tcpserver(root, name, permsg=False, max_use=1)
    if name == "supervise-m100":
        return Tcpserver(root, name, permsg=False, max_use=100)
    if name == "supervise-fork":
        return Tcpserver(root, name, permsg=False, max_use=100, fork=True)
    if name == "postfix":
        return Postfix(root)
    return Sink(root)


def source(port, sessions, msgs, keep, size):
    args = [SMTP_SOURCE, "-s", str(sessions), "-m", str(msgs), "-l", str(size),
            "-M", "client.bench.invalid", "-f", "sender@bench.invalid", "-t", "user@example.com"]
    if keep:
        args.append("-d")
    args.append("127.0.0.1:%d" % port)
    t0 = time.monotonic()
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    t = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace").strip()))
    return t


def one_run(rcv, scen):
    _, sessions, msgs, keep, size = SCENARIOS[scen]
    rcv.clear()
    c0 = rcv.cpu_used()
    t = source(rcv.port, sessions, msgs, keep, size)
    c1 = rcv.cpu_used()
    cpu = (c1 - c0) / msgs if c0 is not None and c1 is not None else None
    if rcv.counts:
        n = rcv.count()
        end = time.monotonic() + 5
        while n < msgs and time.monotonic() < end:
            time.sleep(0.05)
            n = rcv.count()
        if n != msgs:
            raise RuntimeError("%d messages sent, %d in the queue" % (msgs, n))
    return t, cpu


def main():
    os.makedirs(BASE, exist_ok=True)
    root = os.path.join(BASE, time.strftime("run-%Y%m%d-%H%M%S"))
    os.makedirs(root)
    os.chmod(BASE, 0o755)
    os.chmod(root, 0o755)
    global TRASH
    TRASH = os.path.join(root, "trash")
    os.makedirs(TRASH)
    log("scale %s, %d runs, in %s" % (SCALE, RUNS, root))
    receivers = {}
    results = {}  # (system, scenario) -> list of seconds, or an error string
    rss = None
    latency = {}
    cpu = {}  # (system, scenario) -> list of CPU seconds per message
    memory = {}  # system -> kB per session
    durable_res = {}  # (way, writers) -> (writes/s, CPU s per write)
    try:
        for name in want_sys:
            try:
                receivers[name] = start(name, root)
            except (RuntimeError, OSError) as e:
                log("%s: not measured: %s" % (name, e))
                for s in want_scen:
                    results[(name, s)] = "n/a: %s" % e
        for scen in want_scen:
            for run in range(RUNS):
                # Interleave the systems so that noise spreads over all of them.
                for name, rcv in receivers.items():
                    key = (name, scen)
                    if isinstance(results.get(key), str):
                        continue
                    try:
                        t, c = one_run(rcv, scen)
                        results.setdefault(key, []).append(t)
                        if c is not None:
                            cpu.setdefault(key, []).append(c)
                        log("%-16s %-4s run %d: %.3f s%s" % (name, scen, run + 1, t,
                            ", %.0f us CPU/msg" % (c * 1e6) if c is not None else ""))
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        results[key] = "failed: %s" % e
                        log("%s %s: %s" % (name, scen, e))
        for name, rcv in receivers.items():
            rcv.clear()
            if name != "smtp-sink" and os.environ.get("BENCH_LATENCY", "1") != "0":
                try:
                    latency[name] = greet_latency(rcv.port, 50 if SMALL else 500)
                except (OSError, RuntimeError) as e:
                    log("%s latency: %s" % (name, e))
            if name != "smtp-sink" and os.environ.get("BENCH_MEMORY", "1") != "0":
                try:
                    memory[name] = measure_memory(rcv)
                    log("%s memory per session: %s" % (name, memory[name]))
                except (OSError, RuntimeError) as e:
                    log("%s memory: %s" % (name, e))
            rcv.clear()
        if "c" in want_scen and "smtpd-rs" in want_sys:
            rss = measure_rss(root)
        if os.environ.get("BENCH_DURABLE", "1") != "0":
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import durable
            durable_res = durable.measure(root, log)
    finally:
        for rcv in receivers.values():
            try:
                rcv.stop()
            except Exception as e:  # keep stopping the others
                log("stop: %s" % e)
        # BENCH_KEEP_TRASH=1: leave the cleared files for the caller to
        # remove, so that bench runs in a row (an A/B comparison) do not
        # pay for each other's deletions.
        if os.environ.get("BENCH_KEEP_TRASH", "0") == "0":
            shutil.rmtree(TRASH, ignore_errors=True)
    table = render(results, rss, latency, cpu, memory, durable_res)
    print(table)
    with open(os.path.join(root, "results.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(BASE, "results.md"), "w") as f:
        f.write(table + "\n")
    log("table also in %s/results.md; queues and logs in %s" % (BASE, root))
    failed = any(isinstance(v, str) and v.startswith("failed") for v in results.values())
    return 1 if failed else 0


def measure_rss(root):
    """One extra (untimed) run of scenario c with /usr/bin/time around each
    smtpd-rs session and each queue-inject; the peak of each, in KB."""
    try:
        rcv = Tcpserver(root, "smtpd-rs-rss", permsg=False, rss=True)
    except (RuntimeError, OSError) as e:
        return "n/a: %s" % e
    try:
        one_run(rcv, "c")
        time.sleep(0.3)
        return rcv.rss()
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return "failed: %s" % e
    finally:
        rcv.clear()
        rcv.stop()


MEMORY_SESSIONS = 20


def session_pids(rcv):
    """The receiver's processes: from its CPU group, else by session id."""
    pids = []
    if rcv.cpu and rcv.cpu.path:
        try:
            with open(os.path.join(rcv.cpu.path, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            pids = []
    if not pids and getattr(rcv, "proc", None):
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        st = f.read().rsplit(")", 1)[1].split()
                    if int(st[3]) == rcv.proc.pid:
                        pids.append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
    return pids


def established():
    """Inodes of the established TCP sockets."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in list(f)[1:]:
                    w = line.split()
                    if len(w) > 9 and w[3] == "01":
                        out.add(w[9])
        except OSError:
            pass
    return out


def has_client(pid, tcp):
    """Does the process hold an established TCP connection?"""
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if t.startswith("socket:[") and t[8:-1] in tcp:
                return True
    except OSError:
        pass
    return False


def pipes(pid):
    """The pipes a process holds."""
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if t.startswith("pipe:"):
                out.add(t)
    except OSError:
        pass
    return out


def fd0_pipe(pid):
    try:
        t = os.readlink("/proc/%d/fd/0" % pid)
    except OSError:
        return None
    return t if t.startswith("pipe:") else None


def rollup(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith("kB"):
                    out[k] = int(v.split()[0])
        with open("/proc/%d/comm" % pid) as f:
            out["comm"] = f.read().strip()
    except (OSError, ValueError):
        return None
    return out


def measure_memory(rcv):
    """Memory of one session with MEMORY_SESSIONS sessions alive, each
    after one message queued (so its queue-inject has run): per session,
    the sum over its processes (smtpd-rs with the client on fd 0, the
    queue-inject with a pipe on fd 0; Postfix: each smtpd with a client)
    of Rss, Pss, Private_Dirty and Anonymous (smaps_rollup, kB). The
    waiting workers, templates and zygotes are not in it."""
    socks = []
    try:
        for _ in range(MEMORY_SESSIONS):
            s = socket.create_connection(("127.0.0.1", rcv.port), timeout=10)
            socks.append(s)
        def reply(s, code):
            got = b""
            while not any(line.startswith(code + b" ") for line in got.split(b"\r\n")):
                b = s.recv(4096)
                if not b:
                    raise RuntimeError("no %s: %r" % (code.decode(), got[-200:]))
                got += b

        for s in socks:
            reply(s, b"220")
            s.sendall(b"EHLO client.bench.invalid\r\n")
        for s in socks:
            reply(s, b"250")
            s.sendall(b"MAIL FROM:<s@bench.invalid>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n")
        for s in socks:
            reply(s, b"354")
            s.sendall(b"Subject: memory\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n")
        for s in socks:
            reply(s, b"250")
        time.sleep(0.3)
        per = []
        tcp = established()
        procs = [(pid, rollup(pid)) for pid in session_pids(rcv)]
        procs = [(pid, r) for pid, r in procs if r]
        # A session: a process with a client connection; its queue-inject:
        # the one whose fd 0 is a pipe that session holds (not the one a
        # waiting worker has ready).
        held = set()
        for pid, r in procs:
            if r["comm"] in ("smtpd-rs", "smtpd") and has_client(pid, tcp):
                per.append(r)
                held |= pipes(pid)
        for pid, r in procs:
            if r["comm"] == "queue-inject" and fd0_pipe(pid) in held:
                per.append(r)
        if not per:
            raise RuntimeError("no session process found")
        keys = ("Rss", "Pss", "Private_Dirty", "Anonymous")
        total = {k: sum(r.get(k, 0) for r in per) / MEMORY_SESSIONS for k in keys}
        # A page once: anonymous pages (some shared with a template or a
        # zygote after a fork) and private dirty ones (all anonymous here).
        total["private"] = sum(max(r.get("Private_Dirty", 0), r.get("Anonymous", 0)) for r in per) / MEMORY_SESSIONS
        for comm in ("smtpd-rs", "queue-inject", "smtpd"):
            mine = [r for r in per if r["comm"] == comm]
            if mine:
                total[comm] = {k: sum(r.get(k, 0) for r in mine) / len(mine) for k in keys}
        total["processes"] = len(per) / MEMORY_SESSIONS
        return total
    finally:
        for s in socks:
            try:
                s.sendall(b"QUIT\r\n")
                s.close()
            except OSError:
                pass


def greet_latency(port, n):
    """Connect, read the greeting, QUIT: n times in turn. Milliseconds from
    connect() to the first byte of the greeting: (median, 99th percentile)."""
    ms = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(10)
        t0 = time.monotonic()
        s.connect(("127.0.0.1", port))
        if not s.recv(512).startswith(b"220"):
            raise RuntimeError("no greeting")
        ms.append((time.monotonic() - t0) * 1000)
        s.sendall(b"QUIT\r\n")
        try:
            s.recv(512)
        except OSError:
            pass
        s.close()
    ms.sort()
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def render_cpu(results, cpu, cols):
    """Each system's rate as a multiple of Postfix's, and the CPU time its
    whole process tree used per message (median over the runs)."""
    lines = ["| scenario | " + " | ".join(SYSTEMS[c] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for scen in want_scen:
        _, _, msgs, _, _ = SCENARIOS[scen]
        pf = results.get(("postfix", scen))
        pf = statistics.median(pf) if isinstance(pf, list) and pf else None
        cells = []
        for c in cols:
            v = results.get((c, scen))
            parts = []
            if pf and isinstance(v, list) and v:
                parts.append("%.2fx" % (pf / statistics.median(v)))
            if cpu.get((c, scen)):
                parts.append("%.0f us CPU" % (statistics.median(cpu[(c, scen)]) * 1e6))
            cells.append(", ".join(parts) or "-")
        lines.append("| %s | %s |" % (scen, " | ".join(cells)))
    lines.append("Above: each rate as a multiple of Postfix's in the same run, and the CPU time (user and "
                 "kernel) of the receiver's whole process tree per message, from a cgroup around it "
                 "(the kernel's own threads, a journal's commits say, and smtp-source's CPU are not in it).")
    return lines


def render(results, rss, latency=None, cpu=None, memory=None, durable_res=None):
    cols = [s for s in SYSTEMS if s in want_sys]
    lines = []
    lines.append("| scenario | messages | " + " | ".join(SYSTEMS[c] for c in cols) + " | smtpd-rs / Postfix |")
    lines.append("|---" * (len(cols) + 3) + "|")
    for scen in want_scen:
        title, _, msgs, _, size = SCENARIOS[scen]
        rates = {}
        cells = []
        for c in cols:
            v = results.get((c, scen))
            if isinstance(v, list) and v:
                med = statistics.median(v)
                rates[c] = msgs / med
                cell = "%.0f msg/s" % rates[c]
                if size >= 65536:
                    cell += ", %.1f MB/s" % (msgs * size / med / 1e6)
                cells.append(cell)
            else:
                cells.append(str(v) if v else "-")
        ratio = "-"
        if "smtpd-rs" in rates and "postfix" in rates:
            ratio = "%.2fx" % (rates["smtpd-rs"] / rates["postfix"])
        lines.append("| %s | %d | %s | %s |" % (title, msgs, " | ".join(cells), ratio))
    lines.append("")
    if cpu or "postfix" in want_sys:
        lines += render_cpu(results, cpu or {}, cols)
        lines.append("")
    ac = []
    for scen in want_scen:
        title, _, msgs, _, _ = SCENARIOS[scen]
        a, b = results.get(("smtpd-rs-authcheck", scen)), results.get(("smtpd-rs", scen))
        if isinstance(a, list) and a and isinstance(b, list) and b:
            ac.append("%s %.2fx" % (scen, statistics.median(b) / statistics.median(a)))
    if ac:
        lines.append("auth-check in the chain (SPF and DMARC of every message, records from a local DNS "
                     "server, cached per session), as a share of smtpd-rs's rate without it: %s." % ", ".join(ac))
    lines.append("Medians of %d runs (BENCH_SCALE=%s), %d-byte messages (scenario c: %d bytes), "
                 "generated by smtp-source; every run checked that exactly the messages sent "
                 "reached the queue (smtp-sink keeps nothing)." % (RUNS, SCALE, SIZE, BIG))
    if "postfix" in want_sys:
        lines.append("Postfix: a private receive-only instance (smtpd, cleanup, trivial-rewrite; no qmgr, so "
                     "nothing leaves its queue and cleanup logs one warning per message); it fsyncs each queue "
                     "file, not the folder. smtpd-rs: queue-inject fsyncs the file, then the folder.")
    if latency:
        lines.append("Connect to greeting, %s sequential connections: %s." % (
            "50" if SMALL else "500",
            "; ".join("%s median %.2f ms, p99 %.2f ms" % (SYSTEMS[k], v[0], v[1])
                      for k, v in latency.items())))
    if memory:
        lines.append("")
        lines.append("| memory of one session, %d alive, each after one message (kB) | RSS | PSS | Private_Dirty "
                     "| Anonymous | private (a page once) |" % MEMORY_SESSIONS)
        lines.append("|---|---|---|---|---|---|")
        for k, v in memory.items():
            lines.append("| %s | %.0f | %.0f | %.0f | %.0f | %.0f |" % (
                SYSTEMS[k], v["Rss"], v["Pss"], v["Private_Dirty"], v["Anonymous"], v["private"]))
        lines.append("From /proc/PID/smaps_rollup of the session's processes (smtpd-rs with the client and its "
                     "queue-inject; Postfix: its smtpd, without the shared cleanup); \"private\" counts each "
                     "anonymous or private dirty page once (after a fork, anonymous pages still shared with "
                     "the template or the zygote count too). Waiting workers, templates and zygotes are not "
                     "in it.")
        lines.append("")
    if durable_res:
        import durable
        lines += durable.render(durable_res)
        near = []
        for scen in want_scen:
            _, sessions, msgs, _, size = SCENARIOS[scen]
            lim = durable_res.get(("tmpfile", sessions))
            if not lim or size != SIZE:
                continue
            for c in ("smtpd-rs", "supervise-m1", "supervise-fork", "supervise-m100"):
                v = results.get((c, scen))
                if isinstance(v, list) and v:
                    near.append("%s %s %.0f%%" % (scen, SYSTEMS[c], 100 * msgs / statistics.median(v) / lim[0]))
        if near:
            lines.append("Rate as a share of that limit (same number of writers): %s." % "; ".join(near))
        lines.append("")
    if isinstance(rss, list):
        f = lambda v: "%d KB" % v if v is not None else "n/a (not seen)"
        lines.append("Peak RSS in scenario c: smtpd-rs session %s, queue-inject %s (/usr/bin/time, max over processes)."
                     % (f(rss[0]), f(rss[1])))
    elif rss:
        lines.append("Peak RSS in scenario c: %s" % rss)
    u = os.uname()
    lines.append("Machine: %s %s, %d CPUs; %s." % (u.sysname, u.release, os.cpu_count() or 0,
                                                  time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
