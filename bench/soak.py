#!/usr/bin/python3
"""Soak run: smtpd under mixed good and hostile load for a long time.

    /usr/bin/python3 bench/soak.py [--smtpd build/smtpd] [--minutes 30]
                                   [--hostile 200] [--good 4] [--class Sink]

Starts smtpd (-n, -c Sink by default) on a fixed free port of 127.0.0.1 and
runs, for --minutes:
  * --good threads of well-behaved smtplib clients, each sending 1-5
    messages of 1 KB to 200 KB per connection, some pipelined, and QUIT;
  * the hostile load generator of tests/hardening/hostile.py (--load) with
    --hostile connections held open at once: random bytes, 100 KB lines,
    NUL bytes, half commands, invalid UTF-8, pipelined garbage, unread
    replies, slowloris trickles, bare CR/LF data, RST disconnects, all
    replaced as they close.
Every 5 s it checks that smtpd is alive (a dead one counts as a crash and is
restarted on the same port) and samples its RSS (/proc/PID/status VmRSS).

Prints, at the end:
    RSS after 1 min: X KiB, at end: Y KiB (Z %)
plus crashes, messages delivered (the server's own "reply=250" log lines and
the clients' 250s), client failures and the hostile load's figures. Exits 0
when there was no crash and the RSS at the end is within 10 % of the RSS
after the first minute (the goal of issue 5), else 1.

Loopback only; the load ends after --minutes, the script after at most
--minutes + 2 minutes.
"""

import argparse
import collections
import json
import os
import queue
import random
import signal
import smtplib
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))
from smtpdtest import (SYSTEM_PYTHON, free_port, nofile_preexec, nofile_under_hard,  # noqa: E402
                       proc_cpu_seconds, proc_rss_kib, raise_nofile, stop_process)

HOSTILE = os.path.join(ROOT, "tests", "hardening", "hostile.py")
PYTHON = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable


def find_smtpd(arg):
    for p in (arg, os.environ.get("SMTPD_BIN"), os.path.join(ROOT, "build", "smtpd")):
        if p and os.access(p, os.X_OK):
            return os.path.abspath(p)
    sys.exit("soak: no smtpd program (use --smtpd PATH or SMTPD_BIN)")


def rss_split_kib(pid):
    """(heap, other anonymous, file-backed) resident KiB, from /proc/PID/smaps:
    tells a growing heap from library pages touched for the first time."""
    heap = anon = files = 0
    name = ""
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                parts = line.split(None, 5)
                name = parts[5].strip() if len(parts) > 5 else ""
            elif line.startswith("Rss:"):
                kib = int(line.split()[1])
                if name == "[heap]":
                    heap += kib
                elif name.startswith("/"):
                    files += kib
                else:
                    anon += kib
    return heap, anon, files


def sample(reader, pid):
    """reader(pid) (a /proc reader), or None once the process is gone."""
    try:
        return reader(pid)
    except (OSError, KeyError, ValueError, IndexError):
        return None


class Server:
    """smtpd on a fixed port; counts delivered messages from its log."""

    def __init__(self, smtpd, port, cls, extra_opts):
        self.argv = [smtpd, "-n", "-c", cls, "--max-connections", "5000"] + extra_opts + \
                    ["127.0.0.1:%d" % port]
        self.port = port
        self.delivered = 0
        self.lock = threading.Lock()
        self.tail = collections.deque(maxlen=40)
        self.proc = None

    def start(self):
        # The server's stderr is read line by line here, not kept (a long
        # run logs a lot): each delivery is counted, the last lines kept.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=nofile_preexec(nofile_under_hard(8192)))
        ready = threading.Event()
        threading.Thread(target=self._read, args=(self.proc, ready), daemon=True).start()
        if not ready.wait(15):
            raise SystemExit("soak: smtpd did not start: %s" % "\n".join(self.tail))

    def _read(self, proc, ready):
        for raw in proc.stderr:
            line = raw.decode("utf-8", "backslashreplace").rstrip("\n")
            self.tail.append(line)
            if "listening on" in line:
                ready.set()
            elif " message from=" in line and line.endswith("reply=250"):
                with self.lock:
                    self.delivered += 1

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=40):
        if not stop_process(self.proc, signal.SIGTERM, timeout):
            return "killed (did not exit %d s after SIGTERM)" % timeout
        return self.proc.returncode


class GoodClients:
    def __init__(self, port, n, end_time, seed):
        self.port = port
        self.end = end_time
        self.ok = 0
        self.failures = 0
        self.last_errors = collections.deque(maxlen=5)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(random.Random(seed + i), i),
                                         daemon=True) for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout):
        for t in self.threads:
            t.join(timeout)

    def _run(self, r, i):
        k = 0
        while time.time() < self.end:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                    s.ehlo("good%d.example" % i)
                    for _ in range(r.randint(1, 5)):
                        k += 1
                        body = b"".join(b"line %d of a good message %s\r\n" % (j, b"x" * 40)
                                        for j in range(r.randint(10, 3000)))
                        msg = (b"From: good@example.com\r\nTo: rcpt@example.net\r\n"
                               b"Subject: soak %d/%d\r\n\r\n" % (i, k)) + body
                        s.sendmail("good@example.com", ["rcpt@example.net", "other@example.net"],
                                   msg)
                        with self.lock:
                            self.ok += 1
            except Exception as e:  # counted; the run goes on
                with self.lock:
                    self.failures += 1
                    self.last_errors.append(repr(e))
                time.sleep(0.5)
            time.sleep(r.uniform(0.0, 0.2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtpd", help="the smtpd program (default: $SMTPD_BIN or build/smtpd)")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--hostile", type=int, default=200, help="hostile connections held at once")
    ap.add_argument("--good", type=int, default=4, help="well-behaved client threads")
    ap.add_argument("--class", dest="cls", default="Sink")
    ap.add_argument("--seed", type=int, default=random.randrange(1, 1 << 30))
    ap.add_argument("--option", action="append", default=[],
                    help="extra smtpd option (repeatable), e.g. --option=--min-data-rate=100")
    args = ap.parse_args()
    smtpd = find_smtpd(args.smtpd)
    seconds = args.minutes * 60
    raise_nofile(args.hostile + 512)
    port = free_port()
    srv = Server(smtpd, port, args.cls, args.option)
    srv.start()
    print("soak: %s on 127.0.0.1:%d, %.1f min, %d hostile connections, %d good clients, "
          "seed %d" % (smtpd, port, args.minutes, args.hostile, args.good, args.seed), flush=True)
    t0 = time.monotonic()
    end_wall = time.time() + seconds

    load = subprocess.Popen([PYTHON, "-B", HOSTILE, "--load", "--port", str(port),
                             "--connections", str(args.hostile), "--seconds", str(seconds),
                             "--seed", str(args.seed), "--max-reconnects", "100000000"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in load.stdout] + [lines.put(None)],
                     daemon=True).start()
    held = None
    try:
        held = lines.get(timeout=60)
    except queue.Empty:
        pass
    print("soak: hostile load %s" % (held.strip() if held else "did not start"), flush=True)
    load.stdin.write("GO\n")
    load.stdin.flush()

    good = GoodClients(port, args.good, end_wall, args.seed)
    good.start()

    crashes = 0
    crash_notes = []
    rss_1min = None
    samples = []
    next_report = 60.0
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= seconds:
            break
        time.sleep(min(5.0, seconds - elapsed))
        elapsed = time.monotonic() - t0
        if not srv.alive():
            crashes += 1
            crash_notes.append("at %.0f s: exit %r; log tail:\n  %s"
                               % (elapsed, srv.proc.returncode, "\n  ".join(list(srv.tail)[-10:])))
            print("soak: smtpd died (%r) at %.0f s; restarting" % (srv.proc.returncode, elapsed),
                  flush=True)
            srv.start()
            continue
        rss = sample(proc_rss_kib, srv.proc.pid)
        samples.append((elapsed, rss))
        if rss_1min is None and elapsed >= 60:
            rss_1min = rss
            print("soak: RSS after 1 min: %d KiB" % rss, flush=True)
        if elapsed >= next_report:
            next_report += 60
            split = sample(rss_split_kib, srv.proc.pid) or (-1, -1, -1)
            print("soak: %5.1f min  RSS %6d KiB (heap %d, other anon %d, files %d)  "
                  "delivered %d  good ok %d / failed %d  CPU %.0f s"
                  % ((elapsed / 60, rss) + split + (srv.delivered, good.ok, good.failures,
                                                    sample(proc_cpu_seconds, srv.proc.pid) or -1)),
                  flush=True)

    # The end, still under load.
    rss_end = sample(proc_rss_kib, srv.proc.pid) if srv.alive() else None
    if rss_1min is None and samples:
        rss_1min = samples[0][1]  # runs shorter than a minute
    good.join(60)
    stats = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            l = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if l is None:
            break
        if l.startswith("STATS "):
            stats = json.loads(l[6:])
            break
    if load.poll() is None:
        try:
            load.wait(30)
        except subprocess.TimeoutExpired:
            load.kill()
    time.sleep(3)
    alive = srv.alive()
    rss_idle = sample(proc_rss_kib, srv.proc.pid) if alive else None
    rc = srv.stop()

    pct = (rss_end - rss_1min) * 100.0 / rss_1min if rss_end and rss_1min else float("nan")
    print()
    print("RSS after 1 min: %s KiB, at end: %s KiB (%+.1f %%)" % (rss_1min, rss_end, pct))
    print("RSS after the load stopped: %s KiB; min/max sampled: %s / %s KiB"
          % (rss_idle, min(s[1] for s in samples) if samples else None,
             max(s[1] for s in samples) if samples else None))
    print("crashes: %d%s" % (crashes, "" if alive else " (and not alive at the end)"))
    for note in crash_notes:
        print("  " + note)
    print("messages delivered: %d (smtpd's log, reply=250); good clients: %d accepted, %d "
          "failed" % (srv.delivered, good.ok, good.failures))
    for e in good.last_errors:
        print("  good client error: " + e)
    if stats:
        print("hostile load: %d connections, %d RSTs sent, %d closed by smtpd, %d x 421, "
              "%.1f MB sent" % (stats["connects"], stats["resets_sent"], stats["closed_by_server"],
                                stats["replies_421"], stats["bytes_sent"] / 1e6))
    print("smtpd exit after SIGTERM: %r" % rc)
    ok = crashes == 0 and alive and pct == pct and abs(pct) <= 10.0
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
