#!/usr/bin/python3
"""smtpd benchmark suite (issue 6): smtpd's Sink against Postfix's smtp-sink,
Python 3.11's stdlib smtpd and aiosmtpd, side by side in one run.

    bench/run.py [--reps 5] [--png out.png] [--out DIR] [--smtpd PATH]

Starts every server itself, runs every setting for every server in turn
(round robin, so a noisy moment hits all of them alike), takes medians over
--reps repetitions, prints ONE table and writes a PNG plot, a JSON file with
every run and table.md to --out (default bench/out/<timestamp>/).
See bench/README.md for the method, and --help for the knobs.

It installs nothing.  Needs: smtp-source and smtp-sink (Debian postfix),
a python3 with the stdlib smtpd module (3.11; pyenv's python3 here), a
python3 with aiosmtpd (Debian's /usr/bin/python3 + python3-aiosmtpd),
python3-matplotlib for the plot, cc for bench/pipeline_client.c, and a
Release build of smtpd (built into build-bench/ with cmake if missing).
"""
import argparse
import datetime
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
MB = 1e6  # MB/s means 10^6 bytes of message body per second

# ---------------------------------------------------------------- settings
# id: (description, driver, args, messages, body bytes, placement)
#   driver "source": Postfix smtp-source; "pipe": bench/pipeline_client
#   placement "split": servers on CPU 0, client on CPU 1
#             "same":  servers and client on CPU 0
SETTINGS = {
    "s20":       ("20 sessions, 1 KB (smtp-source -s 20 -d)", "source", "-s 20 -d -l 1024", 10000, 1024, "split"),
    "s1":        ("1 session, 1 KB, split CPUs (smtp-source -s 1 -d)", "source", "-s 1 -d -l 1024", 4000, 1024, "split"),
    "s1-same":   ("1 session, 1 KB, same CPU (smtp-source -s 1 -d)", "source", "-s 1 -d -l 1024", 4000, 1024, "same"),
    "1mb":       ("1 session, 1 MB messages (smtp-source -s 1 -d)", "source", "-s 1 -d -l 1048576", 50, 1048576, "split"),
    "pipe-none": ("1 session, 1 KB, no pipelining (pipeline_client -M none)", "pipe", "-s 1 -M none -l 1024 -T 6", 4000, 1024, "split"),
    "pipe":      ("1 session, 1 KB, pipelined (pipeline_client -M full -w 1)", "pipe", "-s 1 -M full -w 1 -l 1024 -T 6", 10000, 1024, "split"),
}
# the Python peers are 5-30x slower: they get this share of each count, so
# that one rep stays short (a rate is a rate; --scale still applies)
SLOW_SHARE = {"pysmtpd": 0.3, "aiosmtpd": 0.3}
# multi-core: load generator = pipeline_client, 20 sessions, 8 messages in
# flight per session (cheap for the client), sessions connecting 2 ms apart;
# see README "Multi-core".  -T: the pipeline_client runs stop starting new
# messages after that many seconds (a slow peer then reports done/wall).
MC_ARGS, MC_MSGS = "-s 20 -M full -w 8 -l 1024 -d 2000 -T 20", 200000


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="repetitions per setting (median taken; default 5)")
    ap.add_argument("--png", help="write the plot here (default OUT/bench.png)")
    ap.add_argument("--out", help="directory for JSON/table/logs (default bench/out/<timestamp>)")
    ap.add_argument("--smtpd", help="smtpd binary (default build-bench/smtpd, rebuilt incrementally first)")
    ap.add_argument("--no-build", action="store_true", help="use build-bench/smtpd as it is")
    ap.add_argument("--servers", default="sink,pysmtpd,aiosmtpd,smtpd,smtpd-w2",
                    help="comma list of sink,pysmtpd,aiosmtpd,smtpd,smtpd-w2")
    ap.add_argument("--settings", default=",".join(SETTINGS) + ",mc,idle",
                    help="comma list of " + ",".join(SETTINGS) + ",mc,idle")
    ap.add_argument("--idle", default="1000,10000", help="idle client counts (default 1000,10000)")
    ap.add_argument("--idle-python-max", type=int, default=1000,
                    help="largest idle count tried for the Python peers (default 1000; see README)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every message count")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per client run")
    ap.add_argument("--port-base", type=int, default=25250)
    ap.add_argument("--keep-logs", action="store_true", help="server stderr to OUT/server-*.log "
                    "(default /dev/null: smtpd logs a line per message)")
    ap.add_argument("--from-json", metavar="RESULTS", help="only redo table, plot (and README) from a "
                    "results.json of an earlier run")
    ap.add_argument("--update-readme", action="store_true",
                    help="replace the results section of bench/README.md")
    return ap.parse_args()


# ---------------------------------------------------------------- /proc helpers
def tree_pids(pid):
    """pid and all its descendants (no /proc/*/children here: scan ppid)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rfind(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_cpu_ns(pid):
    """CPU time (ns) of every thread of one process, from schedstat."""
    tot = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    tot += int(f.read().split()[0])
            except OSError:
                pass
    except OSError:
        return 0
    return tot


def proc_user_sys(pid):
    """(utime, stime) in seconds (10 ms ticks) of one process, all threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0.0, 0.0
    v = s[s.rfind(")") + 2:].split()
    return int(v[11]) / CLK_TCK, int(v[12]) / CLK_TCK


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pin_tree(pids, cpus):
    for p in pids:
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                try:
                    os.sched_setaffinity(int(tid), cpus)
                except OSError:
                    pass
        except OSError:
            pass


def machine_busy():
    """(busy seconds summed over CPUs, timestamp) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK_TCK


def children_cpu():
    t = os.times()
    return t.children_user + t.children_system


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- servers
class Server:
    def __init__(self, label, argv, port, logpath=None):
        self.label, self.argv, self.port, self.logpath = label, argv, port, logpath
        self.proc = None
        self.pids = []

    def start(self, timeout=20.0):
        log = open(self.logpath, "ab") if self.logpath else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, cwd=HERE, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT if self.logpath else subprocess.DEVNULL,
                                     start_new_session=True)
        if self.logpath:
            log.close()
        wait_ready(self.port, timeout, self.proc)
        time.sleep(0.2)
        self.refresh()
        return self

    def refresh(self):
        self.pids = tree_pids(self.proc.pid) if self.alive() else []
        return self.pids

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu_ns(self):
        return {p: proc_cpu_ns(p) for p in self.pids}

    def user_sys(self):
        u = [proc_user_sys(p) for p in self.pids]
        return sum(x[0] for x in u), sum(x[1] for x in u)

    def rss_kib(self):
        return sum(proc_rss_kib(p) for p in self.refresh())

    def pin(self, cpus):
        pin_tree(self.refresh(), cpus)

    def stop(self):
        """Stop the server this object started, by its pid (its workers follow SIGTERM)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for p in self.pids[1:]:          # workers left behind, if any
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        return self.proc.returncode


def wait_ready(port, timeout, proc):
    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with rc={proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                f = s.makefile("rb")
                line = f.readline()
                while line[3:4] == b"-":
                    line = f.readline()
                if line.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    f.readline()
                    return
                last = line
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s: {last!r}")


def python_with(module, candidates):
    for c in candidates:
        exe = shutil.which(c) if not os.path.isabs(c) else (c if os.path.exists(c) else None)
        if not exe:
            continue
        try:
            r = subprocess.run([exe, "-W", "ignore", "-c", f"import sys, {module}; print(sys.executable)"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    return None


def server_argv(kind, port, smtpd, py_smtpd, py_aio, idle_n=None):
    """Command line for a server; idle_n set = the idle-connection variant."""
    if kind == "sink":
        m = max(1000, (idle_n or 0) + 100)
        return ["smtp-sink", "-u", "nobody", "-m", str(m), f"{HOST}:{port}", str(min(m, 4096))]
    if kind == "pysmtpd":
        extra = ["--poll", "--backlog", "128"] if idle_n else []
        return [py_smtpd, os.path.join(HERE, "peers", "py_smtpd_sink.py"), "--port", str(port)] + extra
    if kind == "aiosmtpd":
        return [py_aio, os.path.join(HERE, "peers", "aiosmtpd_sink.py"), "--port", str(port)]
    if kind in ("smtpd", "smtpd-w2"):
        a = [smtpd, "-n", "-c", "Sink", "--hostname", "bench.local", "--max-connections", "20000"]
        if kind == "smtpd-w2":
            a += ["--workers", "2"]
        return a + [f"{HOST}:{port}"]
    raise SystemExit(f"unknown server {kind}")


# ---------------------------------------------------------------- clients
def run_client(argv, cpu, timeout):
    pre = (lambda: os.sched_setaffinity(0, cpu)) if cpu is not None else None
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=pre)
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.kill()                       # the client we started
        out, err = p.communicate()
    wall = time.perf_counter() - t0
    return p.returncode, wall, timed_out, out.decode(errors="replace"), err.decode(errors="replace")


def client_argv(driver, args, count, port, pipe_bin):
    if driver == "source":
        return (["smtp-source", "-4", "-M", "localhost", "-f", "sender@localhost", "-t", "rcpt@localhost",
                 "-m", str(count)] + args.split() + [f"{HOST}:{port}"])
    return [pipe_bin, "-m", str(count), "-t", "55"] + args.split() + [HOST, str(port)]


def measure(sv, argv, count, size, cpu, timeout):
    """One client run against one server; server CPU per process, client CPU, noise."""
    sv.refresh()
    c0, k0, b0, us0 = sv.cpu_ns(), children_cpu(), machine_busy(), sv.user_sys()
    rc, wall, to, out, err = run_client(argv, cpu, timeout)
    c1, k1, b1, us1 = sv.cpu_ns(), children_cpu(), machine_busy(), sv.user_sys()
    du, ds = us1[0] - us0[0], us1[1] - us0[1]
    per = {p: (c1.get(p, 0) - c0.get(p, 0)) / 1e9 for p in c1}
    scpu = sum(per.values())
    ccpu = k1 - k0
    ok = rc == 0 and not to
    pipelining, stopped = None, False
    if argv[0].endswith("pipeline_client"):
        try:
            j = json.loads(out.strip().splitlines()[-1])
            pipelining = j.get("pipelining_advertised")
            stopped = j.get("stopped_at_deadline")
            count = j["done"]          # fewer than asked if stopped at the -T deadline
            if j.get("errors") or not count:
                ok = False
        except (ValueError, IndexError, KeyError):
            ok = False
    r = dict(msgs=count, stopped_at_deadline=stopped, bytes=size, wall=wall, rate=count / wall if ok else None, ok=ok, rc=rc,
             timed_out=to, server_cpu=scpu, server_sys_share=ds / (du + ds) if du + ds > 0 else None, server_cpu_per_proc=sorted(per.values(), reverse=True),
             client_cpu=ccpu, other_load=max(0.0, (b1 - b0 - scpu - ccpu) / wall),
             pipelining_advertised=pipelining, alive=sv.alive())
    if not ok:
        r["output"] = (out + err)[-400:]
    return r


# ---------------------------------------------------------------- idle connections
def read_reply_nb(buf):
    """Return (complete, final_line) for a buffer of reply lines."""
    lines = buf.split(b"\r\n")
    for ln in lines[:-1]:
        if ln[3:4] != b"-":
            return True, ln
    return False, None


def idle_test(sv, n, max_seconds=90.0, in_flight=100):
    """Open n clients (greeting read, EHLO sent, reply read), hold them, measure RSS."""
    res = dict(server=sv.label, n=n)
    time.sleep(0.3)
    res["rss_before_kib"] = sv.rss_kib()
    sel = selectors.DefaultSelector()
    held, pending, err = [], 0, None
    t0 = time.monotonic()
    started = 0
    while (len(held) < n) and err is None:
        if time.monotonic() - t0 > max_seconds:
            err = f"gave up after {max_seconds:.0f} s"
            break
        while pending < in_flight and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect((HOST, sv.port))
            except OSError as e:
                err = f"connect #{started + 1}: {e}"
                s.close()
                break
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, {"sock": s, "buf": b"", "state": "greet"})
            started += 1
            pending += 1
        if err:
            break
        events = sel.select(timeout=5)
        if not events and pending:
            err = f"no progress for 5 s with {pending} clients pending"
            break
        for key, _ in events:
            d = key.data
            s = d["sock"]
            try:
                chunk = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError as e:
                err = f"recv: {e}"
                break
            if not chunk:
                err = f"server closed a client in state {d['state']}"
                break
            d["buf"] += chunk
            done, final = read_reply_nb(d["buf"])
            if not done:
                continue
            d["buf"] = b""
            if d["state"] == "greet":
                if not final.startswith(b"220"):
                    err = f"greeting {final!r}"
                    break
                s.sendall(b"EHLO idle-client.localhost\r\n")
                d["state"] = "ehlo"
            else:
                if not final.startswith(b"250"):
                    err = f"EHLO reply {final!r}"
                    break
                sel.unregister(s)
                held.append(s)
                pending -= 1
    res["connect_s"] = round(time.monotonic() - t0, 2)
    res["held"] = len(held)
    res["error"] = err
    time.sleep(1.5)
    res["rss_held_kib"] = sv.rss_kib()
    # can a new client still get a greeting?
    try:
        t1 = time.monotonic()
        with socket.create_connection((HOST, sv.port), timeout=5) as p:
            p.makefile("rb").readline()
        res["probe_greeting_ms"] = round(1000 * (time.monotonic() - t1), 2)
    except OSError as e:
        res["probe_greeting_ms"] = f"failed: {e}"
    res["alive"] = sv.alive()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    for s in held:
        s.close()
    sel.close()
    if res["held"]:
        res["kib_per_conn"] = round((res["rss_held_kib"] - res["rss_before_kib"]) / res["held"], 2)
    return res


# ---------------------------------------------------------------- summaries
def fmt(v, f="%.0f"):
    return "n/a" if v is None else f % v


def summarize(runs, servers, settings):
    rows = []
    for s in settings:
        for lab in servers:
            rr = [r for r in runs if r["server"] == lab and r["setting"] == s]
            if not rr:
                continue
            good = [r for r in rr if r["ok"]]
            rates = [r["rate"] for r in good]
            m = med(rates)
            row = dict(server=lab, setting=s, runs=len(rr), failed=len(rr) - len(good),
                       rate=m, rate_min=min(rates) if rates else None, rate_max=max(rates) if rates else None,
                       mbps=m * rr[0]["bytes"] / MB if m else None,
                       cpu1000=med([r["server_cpu"] / r["msgs"] * 1000 for r in good]),
                       cli1000=med([r["client_cpu"] / r["msgs"] * 1000 for r in good]),
                       util=med([r["server_cpu"] / r["wall"] for r in good]),
                       sys_share=med([r.get("server_sys_share") for r in good]),
                       other_load=med([r["other_load"] for r in rr]),
                       pipelining_advertised=rr[0].get("pipelining_advertised"),
                       stopped=any(r.get("stopped_at_deadline") for r in rr),
                       busiest_share=med([r["server_cpu_per_proc"][0] / r["server_cpu"] for r in good
                                          if r.get("server_cpu") and len(r["server_cpu_per_proc"]) > 1]))
            if not good and rr[0].get("output"):
                row["error"] = rr[0]["output"].strip().replace("\n", " | ")[-160:]
            rows.append(row)
    return rows


def paired(runs, setting, a, b, key="rate", reps=None):
    """Median over reps of a/b of the same rep (back to back)."""
    out = []
    for rep in sorted({r["rep"] for r in runs}):
        ra = [r for r in runs if r["server"] == a and r["setting"] == setting and r["rep"] == rep and r["ok"]]
        rb = [r for r in runs if r["server"] == b and r["setting"] == setting and r["rep"] == rep and r["ok"]]
        if ra and rb:
            if key == "rate":
                out.append(ra[0]["rate"] / rb[0]["rate"])
            else:
                x = ra[0]["server_cpu"] / ra[0]["msgs"]
                y = rb[0]["server_cpu"] / rb[0]["msgs"]
                if y > 0:
                    out.append(x / y)
    return med(out)


def mc_summary(mc_runs):
    out = {}
    for lab in ("smtpd", "smtpd-w2"):
        rr = [r for r in mc_runs if r["server"] == lab and r["ok"]]
        if not rr:
            continue
        # capacity if every worker had a core and the client ran elsewhere:
        # messages per second of the busiest worker's CPU time
        caps = [r["msgs"] / max(r["server_cpu_per_proc"][0], 1e-9) for r in rr]
        per_cpu = [r["msgs"] / max(r["server_cpu"], 1e-9) for r in rr]
        shares = [r["server_cpu_per_proc"][0] / max(r["server_cpu"], 1e-9) for r in rr]
        out[lab] = dict(rate=med([r["rate"] for r in rr]), capacity=med(caps),
                        msgs_per_cpu_s=med(per_cpu), busiest_share=med(shares),
                        cpu1000=med([r["server_cpu"] / r["msgs"] * 1000 for r in rr]),
                        cli1000=med([r["client_cpu"] / r["msgs"] * 1000 for r in rr]),
                        util=med([r["server_cpu"] / r["wall"] for r in rr]),
                        other_load=med([r["other_load"] for r in rr]), runs=len(rr))
    if "smtpd" in out and "smtpd-w2" in out:
        reps = sorted({r["rep"] for r in mc_runs})
        proj, direct = [], []
        for rep in reps:
            a = [r for r in mc_runs if r["server"] == "smtpd-w2" and r["rep"] == rep and r["ok"]]
            b = [r for r in mc_runs if r["server"] == "smtpd" and r["rep"] == rep and r["ok"]]
            if a and b:
                direct.append(a[0]["rate"] / b[0]["rate"])
                proj.append((a[0]["msgs"] / a[0]["server_cpu_per_proc"][0]) /
                            (b[0]["msgs"] / b[0]["server_cpu"]))
        out["projected_ratio"] = med(proj)
        out["projected_range"] = (min(proj), max(proj)) if proj else None
        out["direct_ratio"] = med(direct)
        # if the two workers had had equal shares of the load
        out["balanced_ratio"] = 2 * out["smtpd-w2"]["msgs_per_cpu_s"] / out["smtpd"]["msgs_per_cpu_s"]
    return out


def render(meta, rows, idle, mc, runs, servers):
    L = []
    L.append(f"Run {meta['date']} on {meta['host']}: {meta['cpus']} CPUs ({meta['cpu_model']}), "
             f"kernel {meta['kernel']}; reps {meta['reps']} (medians), scale {meta['scale']}; "
             f"smtpd {meta['smtpd_version']} ({meta['smtpd_build']}).")
    L.append(f"Background load from other processes during the runs: median {meta['other_load_median']:.2f} "
             f"CPUs busy (max {meta['other_load_max']:.2f}) of {meta['cpus']}; load average at start "
             f"{meta['loadavg_start']}, at end {meta['loadavg_end']}. Total time {meta['elapsed_s']:.0f} s.")
    L.append("")
    L.append("| setting | server | msg/s median (min–max) | MB/s | server CPU s / 1000 msg | "
             "client CPU s / 1000 msg | server CPU use (kernel share) | RSS / idle conn |")
    L.append("|---|---|---|---|---|---|---|---|")
    for s in [x for x in SETTINGS if any(r["setting"] == x for r in rows)]:
        for r in [x for x in rows if x["setting"] == s]:
            rng = f"{fmt(r['rate'])} ({fmt(r['rate_min'])}–{fmt(r['rate_max'])})" if r["rate"] else \
                f"FAILED {r['failed']}/{r['runs']}"
            if r["failed"] and r["rate"]:
                rng += f", {r['failed']}/{r['runs']} failed"
            note = ""
            if SETTINGS[s][1] == "pipe" and r.get("pipelining_advertised") is False:
                note = " ¹"
            if r.get("stopped"):
                note += " ²"
            L.append(f"| {s} | {r['server']}{note} | {rng} | {fmt(r['mbps'], '%.1f')} | "
                     f"{fmt(r['cpu1000'], '%.3f')} | {fmt(r['cli1000'], '%.3f')} | {fmt(r['util'], '%.2f')}"
                     f"{' (%.0f%% sys)' % (100 * r['sys_share']) if r.get('sys_share') is not None else ''} | |")
    for n in sorted({i["n"] for i in idle}):
        for i in [x for x in idle if x["n"] == n]:
            if i.get("skipped"):
                cell = f"skipped: {i['skipped']}"
            else:
                cell = (f"**{fmt(i.get('kib_per_conn'), '%.1f')} KiB** ({i['held']} held, "
                        f"{i['rss_held_kib'] / 1024:.0f} MiB; probe {i['probe_greeting_ms']} ms)")
                if i.get("error"):
                    cell += f"; {i['error']}"
            L.append(f"| idle {n} | {i['server']} | | | | | | {cell} |")
    if mc and "smtpd" in mc:
        for lab in ("smtpd", "smtpd-w2"):
            if lab in mc:
                m = mc[lab]
                L.append(f"| mc (20 sessions pipelined) | {lab} | {fmt(m['rate'])} | | "
                         f"{fmt(m['cpu1000'], '%.3f')} | {fmt(m['cli1000'], '%.3f')} | {fmt(m['util'], '%.2f')} | |")
    if any(r.get("pipelining_advertised") is False for r in rows):
        L.append("")
        L.append("¹ does not advertise PIPELINING; the pipelined client was run against it anyway.")
    if any(r.get("stopped") for r in rows):
        L.append("² too slow for the message count: the client stopped starting messages after its -T "
                 "deadline (6 s); rate = messages done / wall time.")
    # targets
    L.append("")
    L.append("Targets (issue 6); ratios are medians of per-rep ratios, each pair measured back to back:")
    L.append("")
    L.append("| target | smtpd | reference | ratio | met |")
    L.append("|---|---|---|---|---|")
    R = {(r["server"], r["setting"]): r for r in rows}

    def tgt(name, ours, ref, ratio, ok):
        L.append(f"| {name} | {ours} | {ref} | {ratio} | {'yes' if ok else ('**NO**' if ok is False else 'n/a')} |")

    def have(*k):
        return all(x in R and R[x]["rate"] for x in k)

    if have(("smtpd", "s20"), ("sink", "s20")):
        pr = paired(runs, "s20", "smtpd", "sink", "cpu")
        tgt("server CPU / 1000 msg, 20 sessions ≤ smtp-sink", f"{R['smtpd', 's20']['cpu1000']:.3f} s",
            f"sink {R['sink', 's20']['cpu1000']:.3f} s", f"{pr:.2f}x" if pr else "n/a", pr is not None and pr <= 1.0)
        pr = paired(runs, "s20", "smtpd", "sink")
        tgt("msg/s, 20 sessions ≥ smtp-sink", fmt(R["smtpd", "s20"]["rate"]), f"sink {fmt(R['sink', 's20']['rate'])}",
            f"{pr:.2f}x" if pr else "n/a", pr is not None and pr >= 1.0)
    for s, name in (("s1-same", "msg/s, 1 session, same CPU ≥ smtp-sink"),
                    ("s1", "msg/s, 1 session, split CPUs ≥ smtp-sink")):
        if have(("smtpd", s), ("sink", s)):
            pr = paired(runs, s, "smtpd", "sink")
            tgt(name, fmt(R["smtpd", s]["rate"]), f"sink {fmt(R['sink', s]['rate'])}",
                f"{pr:.2f}x" if pr else "n/a", pr is not None and pr >= 1.0)
    if have(("smtpd", "1mb"), ("sink", "1mb")):
        pr = paired(runs, "1mb", "smtpd", "sink")
        tgt("MB/s, 1 MB messages ≥ smtp-sink", f"{R['smtpd', '1mb']['mbps']:.0f} MB/s",
            f"sink {R['sink', '1mb']['mbps']:.0f} MB/s", f"{pr:.2f}x" if pr else "n/a", pr is not None and pr >= 1.0)
    for n in sorted({i["n"] for i in idle}):
        ours = [i for i in idle if i["server"] == "smtpd" and i["n"] == n and not i.get("skipped")]
        sink = [i for i in idle if i["server"] == "sink" and i["n"] == n and not i.get("skipped")]
        if ours:
            o = ours[0]
            ok = o.get("kib_per_conn") is not None and o["kib_per_conn"] <= 8 and o["held"] == n
            ref = f"sink {fmt(sink[0].get('kib_per_conn'), '%.1f')} KiB" if sink else ""
            tgt(f"RSS per idle conn ≤ 8 KiB, {n} held", f"{fmt(o.get('kib_per_conn'), '%.1f')} KiB, {o['held']} held",
                ref, "", ok)
    if have(("smtpd", "pipe"), ("smtpd", "pipe-none")):
        pr = paired_same(runs, "smtpd", "pipe", "pipe-none")
        src = R.get(("smtpd", "s1"))
        ref = f"same client unpipelined {fmt(R['smtpd', 'pipe-none']['rate'])}"
        if src and src["rate"]:
            ref += f"; smtp-source {fmt(src['rate'])} ({R['smtpd', 'pipe']['rate'] / src['rate']:.1f}x)"
        tgt("pipelined ≥ 3x unpipelined, 1 session", fmt(R["smtpd", "pipe"]["rate"]), ref,
            f"{pr:.1f}x" if pr else "n/a", pr is not None and pr >= 3.0)
    if mc and mc.get("projected_ratio"):
        w1, w2 = mc["smtpd"], mc["smtpd-w2"]
        tgt("--workers 2 ≥ 1.6x --workers 1 server CPU throughput (projected, see README)",
            f"w2 {w2['capacity']:.0f} msg/s (busiest worker {100 * w2['busiest_share']:.0f}% of CPU)",
            f"w1 {w1['capacity']:.0f} msg/s", f"{mc['projected_ratio']:.2f}x (reps {mc['projected_range'][0]:.2f}–"
            f"{mc['projected_range'][1]:.2f})", mc["projected_ratio"] >= 1.6)
        tgt("(same, if the load were split evenly between the workers)",
            f"w2 {w2['msgs_per_cpu_s']:.0f} msg per CPU-s", f"w1 {w1['msgs_per_cpu_s']:.0f} msg per CPU-s",
            f"{mc['balanced_ratio']:.2f}x", None)
        tgt("(direct: achieved msg/s, load generator sharing the 2 CPUs)", f"w2 {fmt(w2['rate'])} msg/s",
            f"w1 {fmt(w1['rate'])} msg/s", f"{mc['direct_ratio']:.2f}x", None)
        w2s20 = R.get(("smtpd-w2", "s20"))
        if w2s20 and w2s20.get("busiest_share"):
            L.append(f"\nWorker balance under smtp-source -s 20 (both workers on CPU 0): the busier worker did "
                     f"{100 * w2s20['busiest_share']:.0f}% of the server CPU (median).")
    return "\n".join(L)


def paired_same(runs, server, sa, sb):
    out = []
    for rep in sorted({r["rep"] for r in runs}):
        a = [r for r in runs if r["server"] == server and r["setting"] == sa and r["rep"] == rep and r["ok"]]
        b = [r for r in runs if r["server"] == server and r["setting"] == sb and r["rep"] == rep and r["ok"]]
        if a and b:
            out.append(a[0]["rate"] / b[0]["rate"])
    return med(out)


def plot(path, rows, idle, servers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    colors = {"sink": "#7f7f7f", "pysmtpd": "#1f77b4", "aiosmtpd": "#ff7f0e", "smtpd": "#2ca02c", "smtpd-w2": "#98df8a"}
    has_idle = any(not i.get("skipped") for i in idle)
    fig, axes = plt.subplots(1, 3 if has_idle else 2, figsize=(18 if has_idle else 13, 5.2))
    w = 0.8 / max(1, len(servers))
    for ax, key, title, log in ((axes[0], "rate", "messages/s (median, min–max bars)", True),
                                (axes[1], "cpu1000", "server CPU s per 1,000 messages (lower is better)", True)):
        for i, lab in enumerate(servers):
            xs, ys, lo, hi = [], [], [], []
            for j, s in enumerate(settings):
                r = [x for x in rows if x["server"] == lab and x["setting"] == s]
                if r and r[0][key]:
                    xs.append(j + (i - (len(servers) - 1) / 2) * w)
                    ys.append(r[0][key])
                    if key == "rate":
                        lo.append(r[0][key] - r[0]["rate_min"])
                        hi.append(r[0]["rate_max"] - r[0][key])
            ax.bar(xs, ys, w, label=lab, color=colors.get(lab),
                   yerr=[lo, hi] if key == "rate" and xs else None, capsize=2)
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels(settings)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False,
                                                                        minor_thresholds=(2, 0.5)))
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    if has_idle:
        ax = axes[2]
        ns = sorted({i["n"] for i in idle})
        for i, lab in enumerate(servers):
            xs, ys = [], []
            for j, n in enumerate(ns):
                r = [x for x in idle if x["server"] == lab and x["n"] == n and x.get("kib_per_conn") is not None]
                if r:
                    xs.append(j + (i - (len(servers) - 1) / 2) * w)
                    ys.append(max(r[0]["kib_per_conn"], 0.01))
            ax.bar(xs, ys, w, label=lab, color=colors.get(lab))
        ax.axhline(8, color="red", lw=0.8, ls="--")
        ax.set_xticks(range(len(ns)))
        ax.set_xticklabels([f"{n} idle" for n in ns])
        ax.set_yscale("log")
        ax.set_title("RSS KiB per idle connection after EHLO (target 8)", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- main
def ensure_smtpd(path, build=True):
    """--smtpd PATH as given; else build-bench/smtpd, configured (Release) if
    missing and always brought up to date (an incremental build: a stale
    binary is the easiest way to benchmark the wrong code)."""
    if path:
        return os.path.abspath(path)
    bdir = os.path.join(REPO, "build-bench")
    p = os.path.join(bdir, "smtpd")
    if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        print("# configuring build-bench/ (Release)", flush=True)
        subprocess.run(["cmake", "-S", REPO, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
    if build or not os.path.exists(p):
        print("# building build-bench/smtpd", flush=True)
        subprocess.run(["cmake", "--build", bdir, "-j2", "--target", "smtpd"], check=True, stdout=subprocess.DEVNULL)
    return p


def ensure_pipe_client():
    src = os.path.join(HERE, "pipeline_client.c")
    out = os.path.join(HERE, "build", "pipeline_client")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", out, src], check=True)
    return out


def update_readme(table, png_rel):
    """Put the table and plot between the results markers of bench/README.md
    and of the project's README.md (png_rel is relative to bench/)."""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    for path, png in ((os.path.join(HERE, "README.md"), png_rel),
                      (os.path.join(HERE, "..", "README.md"), "bench/" + png_rel)):
        with open(path) as f:
            text = f.read()
        if begin not in text or end not in text:
            print("# %s has no results markers; not updated" % path)
            continue
        new = f"{begin}\n{table}\n\n![plot]({png})\n{end}"
        text = text[:text.index(begin)] + new + text[text.index(end) + len(end):]
        with open(path, "w") as f:
            f.write(text)


def rerender(a):
    with open(a.from_json) as f:
        d = json.load(f)
    servers = list(dict.fromkeys(r["server"] for r in d["runs"]))
    for i in d["idle"]:
        if i["server"] not in servers:
            servers.append(i["server"])
    mc = mc_summary(d["mc_runs"]) if d["mc_runs"] else {}
    table = render(d["meta"], d["rows"], d["idle"], mc, d["runs"], servers)
    print(table)
    outdir = os.path.dirname(os.path.abspath(a.from_json))
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(table + "\n")
    png = os.path.abspath(a.png or os.path.join(outdir, "bench.png"))
    try:
        plot(png, d["rows"], d["idle"], servers)
    except ImportError:
        print("# no plot: python3-matplotlib is not installed", flush=True)
    if a.update_readme:
        update_readme(table, os.path.relpath(png, HERE))


def main():
    a = parse_args()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])
        print("# matplotlib missing (apt-get install python3-matplotlib): no plot", flush=True)
    if a.from_json:
        return rerender(a)
    if os.cpu_count() < 2:
        raise SystemExit("needs 2 CPUs (servers on CPU 0, clients on CPU 1)")
    t_start = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.abspath(a.out or os.path.join(HERE, "out", stamp))
    os.makedirs(outdir, exist_ok=True)
    png = os.path.abspath(a.png or os.path.join(outdir, "bench.png"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # servers inherit it
    servers = [s for s in a.servers.split(",") if s]
    settings = [s for s in a.settings.split(",") if s]
    matrix = [s for s in settings if s in SETTINGS]
    for s in settings:
        if s not in SETTINGS and s not in ("mc", "idle"):
            raise SystemExit(f"unknown setting {s}")
    smtpd = ensure_smtpd(a.smtpd, not a.no_build)
    pipe_bin = ensure_pipe_client()
    py_smtpd = python_with("smtpd", ["python3", "python3.11"]) if "pysmtpd" in servers else None
    py_aio = python_with("aiosmtpd", ["/usr/bin/python3", "python3"]) if "aiosmtpd" in servers else None
    if "pysmtpd" in servers and not py_smtpd:
        print("# no python3 with the stdlib smtpd module: pysmtpd left out", flush=True)
        servers.remove("pysmtpd")
    if "aiosmtpd" in servers and not py_aio:
        print("# no python3 with aiosmtpd: aiosmtpd left out", flush=True)
        servers.remove("aiosmtpd")
    ver = subprocess.run([smtpd, "--version"], capture_output=True, text=True).stdout.strip()
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), host=platform.node(),
                cpus=os.cpu_count(), cpu_model=cpu_model, kernel=platform.release(), reps=a.reps,
                scale=a.scale, smtpd=smtpd, smtpd_version=ver,
                smtpd_build=(subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                            capture_output=True, text=True).stdout.strip() or "?") +
                ", binary built " + datetime.datetime.fromtimestamp(os.path.getmtime(smtpd)).strftime("%H:%M"),
                py_smtpd=py_smtpd, py_aiosmtpd=py_aio, loadavg_start=open("/proc/loadavg").read().split()[:3],
                nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0], settings=SETTINGS, mc=[MC_ARGS, MC_MSGS])
    print(f"# out: {outdir}\n# {ver} {smtpd}\n# stdlib smtpd: {py_smtpd}\n# aiosmtpd: {py_aio}\n"
          f"# load average {' '.join(meta['loadavg_start'])}", flush=True)
    logp = (lambda lab: os.path.join(outdir, f"server-{lab}.log")) if a.keep_logs else (lambda lab: None)
    runs, mc_runs, idle = [], [], []
    live = {}
    try:
        # ---- matrix: all servers up at once, idle while another is measured
        if matrix or "mc" in settings:
            for i, lab in enumerate(servers):
                port = a.port_base + i
                live[lab] = Server(lab, server_argv(lab, port, smtpd, py_smtpd, py_aio), port, logp(lab)).start()
                print(f"# {lab}: port {port}, pids {live[lab].pids}, RSS {live[lab].rss_kib()} KiB", flush=True)
            for lab, sv in live.items():      # warm-up
                sv.pin({0})
                run_client(client_argv("source", "-s 2 -d -l 1024", 200, sv.port, pipe_bin), {1}, a.timeout)
        print(f"{'rep':>3} {'setting':<10} {'server':<9} {'msgs':>6} {'wall s':>7} {'msg/s':>8} "
              f"{'srvCPU/1k':>9} {'cli/1k':>7} {'other':>5}", flush=True)
        for rep in range(a.reps):
            for s in matrix:
                desc, driver, args, count, size, place = SETTINGS[s]
                count = max(1, int(count * a.scale))
                ccpu = {1} if place == "split" else {0}
                for lab, sv in live.items():
                    count = max(1, int(SETTINGS[s][3] * a.scale * SLOW_SHARE.get(lab, 1.0)))
                    if not sv.alive():
                        runs.append(dict(server=lab, setting=s, rep=rep, ok=False, rate=None, msgs=count,
                                         bytes=size, output="server dead"))
                        continue
                    sv.pin({0})
                    r = measure(sv, client_argv(driver, args, count, sv.port, pipe_bin), count, size, ccpu, a.timeout)
                    r.update(server=lab, setting=s, rep=rep)
                    runs.append(r)
                    print(f"{rep:>3} {s:<10} {lab:<9} {r['msgs']:>6} {r['wall']:>7.3f} {fmt(r['rate']):>8} "
                          f"{1000 * r['server_cpu'] / max(r['msgs'], 1):>9.3f} {1000 * r['client_cpu'] / max(r['msgs'], 1):>7.3f} "
                          f"{r['other_load']:>5.2f}{'' if r['ok'] else '  FAILED ' + r.get('output', '')[-120:].strip()}",
                          flush=True)
                    time.sleep(0.2)
            # ---- multi-core, same rep
            if "mc" in settings and "smtpd" in live and "smtpd-w2" in live:
                count = max(1, int(MC_MSGS * a.scale))
                for lab in ("smtpd", "smtpd-w2"):
                    sv = live[lab]
                    pids = sv.refresh()
                    if lab == "smtpd":
                        sv.pin({0})                       # one event loop owns CPU 0
                    else:
                        for k, p in enumerate(pids[:2]):  # one worker per CPU
                            pin_tree([p], {k % 2})
                    # w1: the load generator gets the other CPU to itself; w2: it floats
                    ccpu = {1} if lab == "smtpd" else None
                    r = measure(sv, client_argv("pipe", MC_ARGS, count, sv.port, pipe_bin), count, 1024, ccpu, a.timeout)
                    r.update(server=lab, setting="mc", rep=rep)
                    mc_runs.append(r)
                    shares = "/".join(f"{x:.2f}" for x in r["server_cpu_per_proc"])
                    print(f"{rep:>3} {'mc':<10} {lab:<9} {r['msgs']:>6} {r['wall']:>7.3f} {fmt(r['rate']):>8} "
                          f"{1000 * r['server_cpu'] / max(r['msgs'], 1):>9.3f} {1000 * r['client_cpu'] / max(r['msgs'], 1):>7.3f} "
                          f"{r['other_load']:>5.2f}  per-process CPU s {shares}"
                          f"{'' if r['ok'] else '  FAILED ' + r.get('output', '')[-120:].strip()}", flush=True)
                    time.sleep(0.2)
    finally:
        for sv in live.values():
            sv.stop()
    # ---- idle connections: a fresh server per test
    if "idle" in settings:
        for n in [int(x) for x in a.idle.split(",") if x]:
            for i, lab in enumerate(servers):
                if lab in ("pysmtpd", "aiosmtpd") and n > a.idle_python_max:
                    idle.append(dict(server=lab, n=n, skipped=f"Python peers tried up to {a.idle_python_max}"))
                    continue
                port = a.port_base + 20 + i
                sv = Server(lab, server_argv(lab, port, smtpd, py_smtpd, py_aio, idle_n=n), port, logp(f"idle-{lab}"))
                try:
                    sv.start()
                    res = idle_test(sv, n)
                except (RuntimeError, OSError) as e:
                    res = dict(server=lab, n=n, held=0, error=str(e), rss_held_kib=0, probe_greeting_ms="n/a")
                finally:
                    sv.stop()
                idle.append(res)
                print(f"# idle {n:>5} {lab:<9} held {res['held']:>5} in {res.get('connect_s', '?')} s, "
                      f"{fmt(res.get('kib_per_conn'), '%.2f')} KiB/conn, RSS {res.get('rss_held_kib', 0) / 1024:.1f} MiB, "
                      f"probe {res.get('probe_greeting_ms')} ms{'; ' + res['error'] if res.get('error') else ''}",
                      flush=True)
                time.sleep(0.5)
    # ---- summary
    meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    meta["elapsed_s"] = time.monotonic() - t_start
    loads = [r["other_load"] for r in runs + mc_runs if "other_load" in r]
    meta["other_load_median"] = med(loads) or 0.0
    meta["other_load_max"] = max(loads) if loads else 0.0
    meta["loadavg_start"] = " ".join(meta["loadavg_start"])
    meta["loadavg_end"] = " ".join(meta["loadavg_end"])
    rows = summarize(runs, servers, matrix)
    mc = mc_summary(mc_runs) if mc_runs else {}
    table = render(meta, rows, idle, mc, runs, servers)
    print("\n" + table, flush=True)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(dict(meta=meta, runs=runs, mc_runs=mc_runs, idle=idle, rows=rows, mc=mc), f, indent=1)
    try:
        plot(png, rows, idle, servers)
        print(f"\n# plot: {png}\n# data: {outdir}/results.json", flush=True)
    except ImportError:
        print("# no plot: python3-matplotlib is not installed", flush=True)
    if a.update_readme:
        update_readme(table, os.path.relpath(png, HERE))


if __name__ == "__main__":
    main()
