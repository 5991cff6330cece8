#!/usr/bin/python3
"""Maildir delivery: smtpd -c Maildir beside aiosmtpd's Mailbox handler and
Postfix's smtp-sink -d, side by side in one run.

    python3 bench/maildir.py --smtpd build/smtpd [--messages 2000] [--reps 1]

Load generator: Postfix's smtp-source, 20 sessions, 1 KB messages, one
message per connection (no -d), as

    smtp-source -c -l 1024 -s 20 -m N -f a@example.com -t b@example.com 127.0.0.1:PORT

The servers, all started at once, each with a folder of its own under one
temporary directory on the real disk (--dir, default /var/tmp; not tmpfs):

  smtpd     smtpd -n -c Maildir --maildir DIR 127.0.0.1:0
            each message written to DIR/tmp, fsynced, renamed into DIR/new,
            DIR/new fsynced, then 250; four writer threads
  aiosmtpd  /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT
                -c aiosmtpd.handlers.Mailbox DIR
            (aiosmtpd 1.4.3: mailbox.Maildir.add in the event loop: write to
            tmp/, fsync the file, link into new/, unlink; no directory fsync)
  sink      smtp-sink -u nobody -d DIR/%M. 127.0.0.1:PORT 100
            one file per message (open at MAIL, one write() and close() after
            the final dot, then 250); no fsync at all (checked with strace)

Per run: messages/s = N / wall clock of smtp-source; server CPU seconds per
1,000 messages from utime+stime of /proc/PID/stat (all threads; 10 ms ticks)
before and after; the client's CPU from its rusage; the background load (CPU
busy in /proc/stat minus server and client, in CPUs); and the files that
appeared in the folder (DIR/new, or DIR for the sink), which must equal N
(DIR/tmp must be empty). Before every run the script calls sync(), so that
no server pays for another's (or the sink's unsynced) dirty pages; the time
that sync takes after the sink's run is printed too. With --reps R every
server is measured R times round robin and the median is shown.

It installs nothing. Needs: smtp-source, smtp-sink (Debian postfix) and
Debian's /usr/bin/python3 with python3-aiosmtpd. The folders are removed at
the end (--keep keeps them). Exit status 0 when every run sent every message
and every message is in its folder.
"""

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import SMTP_SINK, SMTP_SOURCE, SYSTEM_PYTHON, proc_cpu_seconds  # noqa: E402
from run import children_cpu, machine_busy, wait_ready  # noqa: E402  (bench/run.py)

SERVERS = ("smtpd", "aiosmtpd", "sink")
FSYNCS = {  # what each does per message, from its source (and strace for smtp-sink)
    "smtpd": "file + new/ dir",
    "aiosmtpd": "file only",
    "sink": "none",
}


# ---------------------------------------------------------------- the machine

def filesystem_of(path):
    """(mount point, fs type, device, options) of the mount that holds path."""
    path = os.path.realpath(path)
    best = None
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if path == mnt or path.startswith(mnt.rstrip("/") + "/"):
                if best is None or len(mnt) >= len(best[0]):
                    best = (mnt, fstype, dev, opts)
    return best


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# ---------------------------------------------------------------- servers

class Server:
    """One server we started: label, pid, port, the folder and where its files land."""

    def __init__(self, label, folder):
        self.label, self.folder = label, folder
        self.proc = self.obj = None
        self.files_dir = folder
        self.tmp_dir = None
        if label == "smtpd":
            self.obj = smtpdtest.Smtpd("--maildir", folder, cls="Maildir", stdout=subprocess.DEVNULL)
            self.proc, self.port = self.obj.proc, self.obj.port
            self.files_dir, self.tmp_dir = os.path.join(folder, "new"), os.path.join(folder, "tmp")
            self.argv = self.obj.argv
        elif label == "aiosmtpd":
            self.port = smtpdtest.free_port()
            self.argv = [SYSTEM_PYTHON, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:%d" % self.port,
                         "-c", "aiosmtpd.handlers.Mailbox", folder]
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.files_dir, self.tmp_dir = os.path.join(folder, "new"), os.path.join(folder, "tmp")
        elif label == "sink":
            os.makedirs(folder)
            os.chmod(folder, 0o777)   # smtp-sink writes as "nobody" when started as root
            self.obj = smtpdtest.SmtpSink("-d", os.path.join(folder, "%M."))
            self.proc, self.port, self.argv = self.obj.proc, self.obj.port, self.obj.argv
        else:
            raise SystemExit("unknown server %s" % label)
        wait_ready(self.port, 20.0, self.proc)

    def files(self):
        try:
            return len(os.listdir(self.files_dir))
        except FileNotFoundError:
            return 0

    def left_in_tmp(self):
        return len(os.listdir(self.tmp_dir)) if self.tmp_dir and os.path.isdir(self.tmp_dir) else 0

    def cpu(self):
        return proc_cpu_seconds(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.obj is not None:
            self.obj.close()
        else:
            smtpdtest.stop_process(self.proc)


# ---------------------------------------------------------------- one run

def measure(sv, n, size, sessions, timeout):
    os.sync()                      # start with no dirty pages (not timed)
    f0 = sv.files()
    c0, k0, b0 = sv.cpu(), children_cpu(), machine_busy()
    argv = [SMTP_SOURCE, "-c", "-l", str(size), "-s", str(sessions), "-m", str(n),
            "-f", "a@example.com", "-t", "b@example.com", "127.0.0.1:%d" % sv.port]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    timed_out = False
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.kill()                   # the client we started
        _, err = p.communicate()
    wall = time.perf_counter() - t0
    c1, k1, b1 = sv.cpu(), children_cpu(), machine_busy()
    files = sv.files() - f0
    t1 = time.perf_counter()
    os.sync()
    sync_after = time.perf_counter() - t1
    scpu, ccpu = c1 - c0, k1 - k0
    ok = p.returncode == 0 and not timed_out and files == n and sv.left_in_tmp() == 0 and sv.alive()
    r = dict(server=sv.label, n=n, wall=wall, rate=n / wall, server_cpu=scpu,
             server_cpu_per_1000=1000.0 * scpu / n, client_cpu_per_1000=1000.0 * ccpu / n,
             other_load=max(0.0, (b1 - b0 - scpu - ccpu) / wall), files=files,
             left_in_tmp=sv.left_in_tmp(), rc=p.returncode, timed_out=timed_out,
             sync_after=sync_after, ok=ok)
    if not ok:
        r["stderr"] = err.decode("utf-8", "replace")[-400:]
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtpd", default=os.environ.get("SMTPD_BIN",
                                                      os.path.join(HERE, "..", "build", "smtpd")))
    ap.add_argument("--messages", type=int, default=2000, help="messages per run (default 2000)")
    ap.add_argument("--sessions", type=int, default=20, help="smtp-source -s (default 20)")
    ap.add_argument("--size", type=int, default=1024, help="smtp-source -l (default 1024)")
    ap.add_argument("--reps", type=int, default=1, help="runs per server, round robin, median shown")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma list of " + ",".join(SERVERS))
    ap.add_argument("--dir", default="/var/tmp", help="where the temporary folders go (default /var/tmp)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per smtp-source run")
    ap.add_argument("--keep", action="store_true", help="keep the folders")
    args = ap.parse_args()
    labels = [s for s in args.servers.split(",") if s]
    for tool in (SMTP_SOURCE, SMTP_SINK, SYSTEM_PYTHON):
        smtpdtest.need(tool, "postfix" if "smtp" in tool else "python3")
    if "smtpd" in labels:
        smtpdtest.paths["smtpd"] = os.path.abspath(args.smtpd)
        smtpdtest.smtpd_bin()

    top = tempfile.mkdtemp(prefix="maildir-bench-", dir=args.dir)
    os.chmod(top, 0o711)           # smtp-sink (nobody) must pass through it
    fs = filesystem_of(top)
    servers, runs, ok = [], [], True
    t_start = time.monotonic()
    try:
        for label in labels:
            servers.append(Server(label, os.path.join(top, label)))
        print("maildir: %d messages of %d bytes per run, smtp-source -s %d (one message per "
              "connection), reps %d" % (args.messages, args.size, args.sessions, args.reps))
        print("folders under %s: %s on %s (mounted at %s, %s)"
              % (top, fs[1], fs[2], fs[0], fs[3]) if fs else "folders under %s" % top)
        print("machine: %s, %d CPUs (%s), kernel %s; load average %s"
              % (platform.node(), os.cpu_count(), cpu_model(), platform.release(),
                 " ".join(open("/proc/loadavg").read().split()[:3])))
        for sv in servers:
            print("  %-8s pid %d: %s" % (sv.label, sv.proc.pid, " ".join(sv.argv)))
        for rep in range(args.reps):
            for sv in servers:
                r = measure(sv, args.messages, args.size, args.sessions, args.timeout)
                r["rep"] = rep
                runs.append(r)
                print("  rep %d %-8s %7.0f msg/s  %.3f CPU s/1000  files %d/%d%s"
                      % (rep + 1, sv.label, r["rate"], r["server_cpu_per_1000"], r["files"], r["n"],
                         "" if r["ok"] else "  FAILED rc=%s timeout=%s tmp=%d %s"
                         % (r["rc"], r["timed_out"], r["left_in_tmp"], r.get("stderr", "").strip())),
                      flush=True)
                ok = ok and r["ok"]
    finally:
        for sv in servers:
            sv.stop()
        if args.keep:
            print("kept: %s" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)

    def medof(label, key):
        return statistics.median(r[key] for r in runs if r["server"] == label)

    print()
    print("Run %s, %.0f s in all; background load median %.2f CPUs (max %.2f)"
          % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), time.monotonic() - t_start,
             statistics.median(r["other_load"] for r in runs), max(r["other_load"] for r in runs)))
    print()
    print("| server | msg/s | server CPU s / 1000 msg | client CPU s / 1000 msg | files / sent | fsync per message | sync() after the run |")
    print("|---|---|---|---|---|---|---|")
    for label in labels:
        mine = [r for r in runs if r["server"] == label]
        rates = [r["rate"] for r in mine]
        rate = "%.0f" % medof(label, "rate")
        if len(rates) > 1:
            rate += " (%.0f–%.0f)" % (min(rates), max(rates))
        print("| %s | %s | %.3f | %.3f | %s | %s | %.2f s |"
              % (label, rate, medof(label, "server_cpu_per_1000"), medof(label, "client_cpu_per_1000"),
                 " ".join("%d/%d" % (r["files"], r["n"]) for r in mine), FSYNCS[label],
                 medof(label, "sync_after")))
    print()
    print("smtp-sink -d does not fsync: its messages are in the page cache when it says 250 "
          "(the sync() column is what writing them out cost afterwards, outside its time).")
    print("RESULT: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
