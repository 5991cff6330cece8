#!/usr/bin/python3
"""TLS benchmark: smtpd over STARTTLS against smtpd in plaintext and aiosmtpd
with STARTTLS; then server memory per idle TLS connection.

    bench/tls.py [--reps 3] [--out DIR] [--smtpd PATH] [--certs ec,rsa]

1. Throughput: bench/tls_client (C, OpenSSL, one thread and one blocking
   connection per session), 20 sessions, 1 KB messages, no pipelining
   (MAIL, RCPT, DATA, body: four round trips per message, like smtp-source),
   every reply checked.  Per run: msg/s and the server's CPU (user + sys
   from /proc/PID/stat, summed over the server's process tree) per 1,000
   messages.  Servers: smtpd plaintext, smtpd STARTTLS, aiosmtpd STARTTLS
   (Controller with tls_context) and aiosmtpd plaintext for reference, one
   STARTTLS server per certificate type (--certs).  All are up at once and
   measured in turn (round robin) in every repetition; medians.
2. Idle: a fresh smtpd per test; 1,000 clients (tls_client -H, at most 100
   of them connecting at a time) each read the greeting, EHLO, STARTTLS +
   handshake + EHLO again (plaintext: EHLO only), then hold.  VmRSS of the
   server before and 1.5 s after the last one is held: KiB per connection;
   then a second round of as many (reused or leaked?).

Certificates are made at run time in a temp dir (self-signed, P-256 and
RSA-2048) and removed afterwards.  Server on CPU 0, client on CPU 1.
Output: a markdown table on stdout, results.json and table.md in --out
(default bench/out/tls-<timestamp>/, not tracked).  See bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import run as B  # bench/run.py: /proc helpers, Server, ensure_smtpd

HERE, REPO, HOST = B.HERE, B.REPO, B.HOST
SESSIONS, SIZE = 20, 1024

AIOSMTPD_SERVER = r'''
"""aiosmtpd sink for bench/tls.py: Controller, STARTTLS when --cert is given."""
import argparse, logging, signal, ssl, sys, threading
from aiosmtpd import __version__
from aiosmtpd.controller import Controller


class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--cert")
ap.add_argument("--key")
a = ap.parse_args()
logging.getLogger("mail.log").setLevel(logging.WARNING)
kw = {}
if a.cert:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    kw["tls_context"] = ctx
# server_hostname fixed: otherwise every connection calls socket.getfqdn()
c = Controller(Handler(), hostname="127.0.0.1", port=a.port, server_hostname="bench.local", **kw)
c.start()
print(f"aiosmtpd {__version__} Python {sys.version.split()[0]} {ssl.OPENSSL_VERSION} "
      f"port {a.port} tls={bool(a.cert)}", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
signal.signal(signal.SIGINT, lambda *_: done.set())
while not done.wait(1):
    pass
c.stop()
'''


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (median taken; default 3)")
    ap.add_argument("--out", help="directory for results.json and table.md (default bench/out/tls-<timestamp>)")
    ap.add_argument("--smtpd", help="smtpd binary (default build-bench/smtpd, rebuilt incrementally first)")
    ap.add_argument("--no-build", action="store_true", help="use build-bench/smtpd as it is")
    ap.add_argument("--certs", default="ec,rsa", help="certificate types for the TLS servers: ec (P-256), "
                    "rsa (RSA-2048); comma list, default both")
    ap.add_argument("--servers", default="smtpd,smtpd-tls,aiosmtpd-tls,aiosmtpd",
                    help="comma list of smtpd,smtpd-tls,aiosmtpd-tls,aiosmtpd (default all)")
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="target length of one run; the message count per server comes from the "
                    "warm-up run's rate (default 6)")
    ap.add_argument("--messages", type=int, help="fixed message count for every server instead")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections held (default 1000; 0: skip)")
    ap.add_argument("--client-args", default="", help="extra tls_client arguments, e.g. '-C TLS_AES_128_GCM_SHA256'")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per client run")
    ap.add_argument("--port-base", type=int, default=25450)
    ap.add_argument("--keep-logs", action="store_true", help="server output to OUT/server-*.log (default /dev/null)")
    return ap.parse_args()


def build_client():
    src = os.path.join(HERE, "tls_client.c")
    out = os.path.join(HERE, "build", "tls_client")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-pthread", "-o", out, src, "-lssl", "-lcrypto"],
                       check=True)
    return out


def make_certs(d, kinds):
    certs = {}
    for k in kinds:
        key, crt = os.path.join(d, f"{k}.key"), os.path.join(d, f"{k}.crt")
        alg = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if k == "ec"
               else ["-newkey", "rsa:2048"] if k == "rsa" else None)
        if alg is None:
            raise SystemExit(f"unknown certificate type {k} (ec, rsa)")
        subprocess.run(["openssl", "req", "-x509"] + alg + ["-nodes", "-subj", "/CN=localhost", "-days", "2",
                        "-keyout", key, "-out", crt], check=True, capture_output=True)
        certs[k] = (crt, key)
    return certs


CERT_NAME = {"ec": "P-256", "rsa": "RSA-2048", None: ""}


class Spec:
    """One server configuration: label, implementation, TLS or not, certificate."""

    def __init__(self, impl, tls, cert):
        self.impl, self.tls, self.cert = impl, tls, cert
        self.label = impl + (f" STARTTLS {CERT_NAME[cert]}" if tls else " plaintext")

    def argv(self, port, smtpd, py_aio, certs, aio_script):
        crt = certs[self.cert] if self.cert else None
        if self.impl == "smtpd":
            a = [smtpd, "-n", "-c", "Sink", "--hostname", "bench.local", "--max-connections", "5000"]
            if crt:
                a += ["--tls-cert", crt[0], "--tls-key", crt[1]]
            return a + [f"{HOST}:{port}"]
        a = [py_aio, aio_script, "--port", str(port)]
        return a + (["--cert", crt[0], "--key", crt[1]] if crt else [])


IDLE_IN_SETUP = 100  # idle test: at most this many clients connecting at once (as run.py)


def client_argv(cli, spec_tls, count, port, extra, sessions=SESSIONS, hold=False, timeout=60):
    a = [cli, "-s", str(sessions), "-m", str(count), "-l", str(SIZE), "-T", str(timeout)]
    if spec_tls:
        a.append("-t")
    if hold:
        a += ["-H", "-P", str(IDLE_IN_SETUP)]
    return a + extra + [HOST, str(port)]


def run_client(argv, timeout):
    """The client on CPU 1; returns (rc, wall, parsed JSON or None, output tail)."""
    rc, wall, to, out, err = B.run_client(argv, {1}, timeout)
    j = None
    try:
        j = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pass
    return rc, wall, to, j, (out + err)[-400:]


def measure(sv, argv, count, timeout):
    sv.refresh()
    sv.pin({0})
    us0, k0, b0 = sv.user_sys(), B.children_cpu(), B.machine_busy()
    rc, wall, to, j, tail = run_client(argv, timeout)
    us1, k1, b1 = sv.user_sys(), B.children_cpu(), B.machine_busy()
    du, ds = us1[0] - us0[0], us1[1] - us0[1]
    scpu, ccpu = du + ds, k1 - k0
    ok = rc == 0 and not to and j is not None and j.get("done") == count and not j.get("errors")
    cwall = j["wall"] if j else wall
    r = dict(msgs=count, ok=ok, rc=rc, timed_out=to, wall=cwall, rate=count / cwall if ok else None,
             server_cpu=scpu, server_user=du, server_sys=ds, client_cpu=ccpu,
             other_load=max(0.0, (b1 - b0 - scpu - ccpu) / wall), alive=sv.alive(),
             protocol=j.get("protocol") if j else None, cipher=j.get("cipher") if j else None,
             group=j.get("group") if j else None, max_setup=j.get("max_setup") if j else None)
    if not ok:
        r["output"] = tail
        r["first_error"] = j.get("first_error") if j else None
        r["done"] = j.get("done") if j else None
    return r


def hold(sv, cli, tls, n, extra, timeout, res, key):
    """n clients held by one tls_client -H; res[key] = RSS while held (KiB).
    Returns the client's ready line (dict)."""
    us0, t0 = sv.user_sys(), time.monotonic()
    p = subprocess.Popen(client_argv(cli, tls, 0, sv.port, extra, sessions=n, hold=True, timeout=timeout),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    j = {}
    try:
        line = p.stdout.readline()
        setup, us1 = time.monotonic() - t0, sv.user_sys()
        try:
            j = json.loads(line)
        except ValueError:
            pass
        j["setup_s"] = round(setup, 3)
        j["server_cpu_ms_per_setup"] = round(1000 * (sum(us1) - sum(us0)) / max(j.get("held", 0), 1), 3)
        time.sleep(1.5)
        res[key] = sv.rss_kib()
        out, err = p.communicate(timeout=timeout)   # closes stdin: the sessions QUIT
        j["client_rc"] = p.returncode
        if p.returncode != 0:
            j["client_output"] = (out.decode(errors="replace") + err.decode(errors="replace"))[-400:]
    except subprocess.TimeoutExpired:
        p.kill()                                     # the client we started
        p.communicate()
        j["client_rc"] = "timeout"
    return j


def idle_test(sv, cli, tls, n, extra, timeout):
    """Hold n clients (greeting, EHLO[, STARTTLS, handshake, EHLO]); RSS per
    connection.  Then, once they are gone, n more: if the second round adds
    (almost) nothing, the first round's memory was reused, not leaked."""
    res = dict(server=sv.label, n=n, tls=tls)
    sv.pin({0})
    # warm-up: 10 full connections (the first TLS handshake sets up OpenSSL's
    # lazily built tables; that is not a per-connection cost)
    B.run_client(client_argv(cli, tls, 20, sv.port, extra, sessions=10), {1}, timeout)
    time.sleep(0.5)
    res["rss_before_kib"] = sv.rss_kib()
    j = hold(sv, cli, tls, n, extra, timeout, res, "rss_held_kib")
    res["held"] = j.get("held", 0)
    for k in ("setup_s", "server_cpu_ms_per_setup", "protocol", "cipher", "group", "client_rc", "client_output"):
        if k in j:
            res[k] = j[k]
    res["client_errors"] = j.get("errors")
    time.sleep(1.0)
    res["rss_after_close_kib"] = sv.rss_kib()
    j2 = hold(sv, cli, tls, n, extra, timeout, res, "rss_held2_kib")
    res["held2"] = j2.get("held", 0)
    time.sleep(0.5)
    res["alive"] = sv.alive()
    if res.get("held"):
        res["kib_per_conn"] = round((res["rss_held_kib"] - res["rss_before_kib"]) / res["held"], 2)
    if res.get("held2") and "rss_held2_kib" in res:
        res["second_round_kib"] = res["rss_held2_kib"] - res["rss_held_kib"]
    return res


# ---------------------------------------------------------------- summaries
def fmt(v, f="%.0f"):
    return "n/a" if v is None else f % v


def summarize(runs, specs):
    rows = []
    for sp in specs:
        rr = [r for r in runs if r["server"] == sp.label]
        good = [r for r in rr if r["ok"]]
        rates = [r["rate"] for r in good]
        rows.append(dict(server=sp.label, impl=sp.impl, tls=sp.tls, cert=sp.cert, runs=len(rr),
                         failed=len(rr) - len(good), msgs=rr[0]["msgs"] if rr else None,
                         rate=B.med(rates), rate_min=min(rates) if rates else None,
                         rate_max=max(rates) if rates else None,
                         cpu1000=B.med([1000 * r["server_cpu"] / r["msgs"] for r in good]),
                         cli1000=B.med([1000 * r["client_cpu"] / r["msgs"] for r in good]),
                         sys_share=B.med([r["server_sys"] / r["server_cpu"] for r in good if r["server_cpu"] > 0]),
                         util=B.med([r["server_cpu"] / r["wall"] for r in good]),
                         other_load=B.med([r["other_load"] for r in rr]),
                         cipher=next((f"{r['protocol']} {r['cipher']} {r['group']}" for r in good if r.get("cipher")), ""),
                         error=next((r.get("first_error") or r.get("output", "")[-160:] for r in rr if not r["ok"]), None)))
    return rows


def paired(runs, a, b, key):
    """Median over reps of a/b measured in the same rep."""
    out = []
    for rep in sorted({r["rep"] for r in runs}):
        ra = [r for r in runs if r["server"] == a and r["rep"] == rep and r["ok"]]
        rb = [r for r in runs if r["server"] == b and r["rep"] == rep and r["ok"]]
        if ra and rb:
            if key == "rate":
                out.append(ra[0]["rate"] / rb[0]["rate"])
            elif rb[0]["server_cpu"] > 0:
                out.append((ra[0]["server_cpu"] / ra[0]["msgs"]) / (rb[0]["server_cpu"] / rb[0]["msgs"]))
    return B.med(out), out


def render(meta, rows, runs, idle):
    L = [f"Run {meta['date']} on {meta['host']}: {meta['cpus']} CPUs ({meta['cpu_model']}), kernel {meta['kernel']}; "
         f"{meta['smtpd_version']} ({meta['smtpd_build']}); {meta['openssl']}; aiosmtpd {meta['aiosmtpd']}.",
         f"{SESSIONS} sessions, {SIZE}-byte bodies, no pipelining, reps {meta['reps']} (medians); server on CPU 0, "
         f"client on CPU 1. Load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}; "
         f"background load during the runs median {meta['other_load_median']:.2f} CPUs (max {meta['other_load_max']:.2f}).",
         "",
         "| server | msgs/run | msg/s median (min–max) | server CPU s / 1000 msg | client CPU s / 1000 msg "
         "| server CPU use (kernel share) | TLS |",
         "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["rate"] is None:
            L.append(f"| {r['server']} | {r['msgs']} | FAILED ({r['failed']}/{r['runs']}): {r['error']} | | | | |")
            continue
        fail = f" ({r['failed']} of {r['runs']} runs failed)" if r["failed"] else ""
        L.append(f"| {r['server']} | {r['msgs']} | {r['rate']:.0f} ({r['rate_min']:.0f}–{r['rate_max']:.0f}){fail} "
                 f"| {r['cpu1000']:.3f} | {r['cli1000']:.3f} | {r['util']:.2f} ({100 * r['sys_share']:.0f}% sys) "
                 f"| {r['cipher']} |")
    pairs = []
    plain = next((r for r in rows if r["impl"] == "smtpd" and not r["tls"]), None)
    for r in rows:
        if r["tls"] and plain:
            ref = plain if r["impl"] == "smtpd" else next(
                (x for x in rows if x["impl"] == r["impl"] and not x["tls"]), None)
            if ref:
                pairs.append((r["server"], ref["server"]))
        if r["impl"] == "aiosmtpd" and r["tls"]:
            s = next((x for x in rows if x["impl"] == "smtpd" and x["tls"] and x["cert"] == r["cert"]), None)
            if s:
                pairs.append((s["server"], r["server"]))
    if pairs:
        L += ["", "Paired ratios (median over reps of the ratio of two runs of the same rep):", "",
              "| a | b | msg/s a/b | server CPU per message a/b |", "|---|---|---|---|"]
        for a, b in pairs:
            rm, rl = paired(runs, a, b, "rate")
            cm, cl = paired(runs, a, b, "cpu")
            L.append(f"| {a} | {b} | {fmt(rm, '%.2f')}x ({', '.join('%.2f' % x for x in rl)}) "
                     f"| {fmt(cm, '%.2f')}x ({', '.join('%.2f' % x for x in cl)}) |")
    if idle:
        L += ["", f"Idle connections, {idle[0]['n']} held (fresh smtpd per test; each client: greeting, EHLO, "
              "[STARTTLS, handshake, EHLO], then silent; at most "
              f"{IDLE_IN_SETUP} connecting at a time; medians over reps):", "",
              "| server | held | RSS before / held / after close (KiB) | **KiB per connection** "
              "| second round: RSS growth (KiB) | server CPU ms per connection setup | setup wall s | TLS |",
              "|---|---|---|---|---|---|---|---|"]
        for lab in dict.fromkeys(i["server"] for i in idle):
            ii = [i for i in idle if i["server"] == lab]
            good = [i for i in ii if i.get("kib_per_conn") is not None and i.get("held") == i["n"]]
            if not good:
                L.append(f"| {lab} | {ii[0].get('held')} of {ii[0]['n']} | FAILED: "
                         f"{(ii[0].get('error') or ii[0].get('client_output', ''))[-160:].strip()} | | | | | |")
                continue
            kib = [i["kib_per_conn"] for i in good]
            L.append(f"| {lab} | {good[0]['held']} | {B.med([i['rss_before_kib'] for i in good]):.0f} / "
                     f"{B.med([i['rss_held_kib'] for i in good]):.0f} / {B.med([i['rss_after_close_kib'] for i in good]):.0f} "
                     f"| **{B.med(kib):.1f}** ({min(kib):.1f}–{max(kib):.1f}) "
                     f"| {fmt(B.med([i.get('second_round_kib') for i in good]), '%+.0f')} "
                     f"| {B.med([i['server_cpu_ms_per_setup'] for i in good]):.2f} "
                     f"| {B.med([i['setup_s'] for i in good]):.2f} "
                     f"| {(good[0].get('protocol') or '') + ' ' + (good[0].get('cipher') or '')} |")
    return "\n".join(L)


# ---------------------------------------------------------------- main
def main():
    a = parse_args()
    if os.cpu_count() < 2:
        raise SystemExit("needs 2 CPUs (server on CPU 0, client on CPU 1)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.abspath(a.out or os.path.join(HERE, "out", f"tls-{stamp}"))
    os.makedirs(outdir, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # servers and client inherit it
    if a.idle and hard < a.idle + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for --idle {a.idle}")
    kinds = [k for k in a.certs.split(",") if k]
    smtpd = B.ensure_smtpd(a.smtpd, not a.no_build)
    cli = build_client()
    py_aio = B.python_with("aiosmtpd", ["/usr/bin/python3", "python3"])
    names = [s for s in a.servers.split(",") if s]
    specs = []
    for nm in names:
        impl, tls = nm.split("-")[0], nm.endswith("-tls")
        if impl not in ("smtpd", "aiosmtpd") or nm not in ("smtpd", "smtpd-tls", "aiosmtpd", "aiosmtpd-tls"):
            raise SystemExit(f"unknown server {nm}")
        if impl == "aiosmtpd" and not py_aio:
            print(f"# no python3 with aiosmtpd: {nm} left out", flush=True)
            continue
        specs += [Spec(impl, True, k) for k in kinds] if tls else [Spec(impl, False, None)]
    extra = a.client_args.split()
    tmp = tempfile.mkdtemp(prefix="smtpd-tls-bench.")
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), host=platform.node(),
                cpus=os.cpu_count(),
                cpu_model=next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                                if ln.startswith("model name")), "?"),
                kernel=platform.release(), reps=a.reps, smtpd=smtpd,
                smtpd_version=subprocess.run([smtpd, "--version"], capture_output=True, text=True).stdout.strip(),
                smtpd_build=(subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                            capture_output=True, text=True).stdout.strip() or "?")
                + ", binary built " + datetime.datetime.fromtimestamp(os.path.getmtime(smtpd)).strftime("%H:%M"),
                openssl=subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip(),
                aiosmtpd=(subprocess.run([py_aio, "-c", "import aiosmtpd, sys; print(aiosmtpd.__version__, "
                                          "'Python', sys.version.split()[0])"], capture_output=True,
                                         text=True).stdout.strip() if py_aio else None),
                loadavg_start=" ".join(open("/proc/loadavg").read().split()[:3]),
                argv=sys.argv, sessions=SESSIONS, size=SIZE, certs=kinds)
    print(f"# out: {outdir}\n# {meta['smtpd_version']} {smtpd}\n# {meta['openssl']}; aiosmtpd {meta['aiosmtpd']}\n"
          f"# load average {meta['loadavg_start']}", flush=True)
    logp = (lambda lab: os.path.join(outdir, "server-" + lab.replace(" ", "_") + ".log")) if a.keep_logs \
        else (lambda lab: None)
    runs, idle, live = [], [], {}
    try:
        certs = make_certs(tmp, kinds)
        aio_script = os.path.join(tmp, "aiosmtpd_tls_sink.py")
        with open(aio_script, "w") as f:
            f.write(AIOSMTPD_SERVER)
        # ---- throughput: all servers up, measured in turn
        counts = {}
        for i, sp in enumerate(specs):
            port = a.port_base + i
            sv = B.Server(sp.label, sp.argv(port, smtpd, py_aio, certs, aio_script), port, logp(sp.label))
            live[sp.label] = sv.start()
            sv.pin({0})
            # warm-up, which also sizes the runs: --seconds at the warm-up rate
            wn = 4000 if sp.impl == "smtpd" else 600
            r = measure(sv, client_argv(cli, sp.tls, wn, port, extra), wn, a.timeout)
            if a.messages:
                counts[sp.label] = a.messages
            elif r["ok"]:
                counts[sp.label] = max(1000, int(round(r["rate"] * a.seconds, -3)))
            else:
                counts[sp.label] = 10 * wn
            print(f"# {sp.label}: port {port}, pids {sv.pids}, RSS {sv.rss_kib()} KiB, warm-up "
                  f"{fmt(r['rate'])} msg/s{'' if r['ok'] else ' FAILED ' + str(r.get('first_error') or r.get('output'))}"
                  f" -> {counts[sp.label]} messages per run", flush=True)
        print(f"{'rep':>3} {'server':<28} {'msgs':>6} {'wall s':>7} {'msg/s':>8} {'srvCPU/1k':>9} {'cli/1k':>7} "
              f"{'other':>5}", flush=True)
        for rep in range(a.reps):
            for sp in specs:
                sv, n = live[sp.label], counts[sp.label]
                if not sv.alive():
                    runs.append(dict(server=sp.label, rep=rep, ok=False, rate=None, msgs=n, output="server dead",
                                     server_cpu=0, client_cpu=0, other_load=0, wall=0))
                    print(f"{rep:>3} {sp.label:<28} server dead (rc {sv.proc.returncode})", flush=True)
                    continue
                r = measure(sv, client_argv(cli, sp.tls, n, sv.port, extra), n, a.timeout)
                r.update(server=sp.label, rep=rep)
                runs.append(r)
                print(f"{rep:>3} {sp.label:<28} {n:>6} {r['wall']:>7.3f} {fmt(r['rate']):>8} "
                      f"{1000 * r['server_cpu'] / n:>9.3f} {1000 * r['client_cpu'] / n:>7.3f} {r['other_load']:>5.2f}"
                      f"{'' if r['ok'] else '  FAILED ' + str(r.get('first_error') or r.get('output', '')[-160:])}",
                      flush=True)
                time.sleep(0.3)
    finally:
        for sv in live.values():
            sv.stop()
    try:
        # ---- idle connections: a fresh smtpd per test, in turn per rep
        if a.idle:
            ispecs = [Spec("smtpd", True, k) for k in kinds] + [Spec("smtpd", False, None)]
            if kinds:   # plaintext clients of a server that has a certificate loaded
                ispecs.append(Spec("smtpd", False, kinds[0]))
                ispecs[-1].label = f"smtpd plaintext (server with {CERT_NAME[kinds[0]]} cert)"
            for rep in range(a.reps):
                for i, sp in enumerate(ispecs):
                    port = a.port_base + 40 + i
                    sv = B.Server(sp.label, sp.argv(port, smtpd, py_aio, certs, aio_script), port,
                                  logp("idle-" + sp.label))
                    try:
                        sv.start()
                        res = idle_test(sv, cli, sp.tls, a.idle, extra, a.timeout)
                    except (RuntimeError, OSError) as e:
                        res = dict(server=sp.label, n=a.idle, held=0, error=str(e))
                    finally:
                        sv.stop()
                    res["rep"] = rep
                    idle.append(res)
                    print(f"# idle rep {rep} {sp.label:<40} held {res.get('held')} in {res.get('setup_s')} s, "
                          f"{fmt(res.get('kib_per_conn'), '%.2f')} KiB/conn (RSS {res.get('rss_before_kib')} -> "
                          f"{res.get('rss_held_kib')} -> {res.get('rss_after_close_kib')} KiB; 2nd round "
                          f"{res.get('rss_held2_kib')} KiB), server CPU "
                          f"{res.get('server_cpu_ms_per_setup')} ms/setup"
                          f"{'; ' + str(res.get('error') or res.get('client_output', '')) if res.get('error') or res.get('client_output') else ''}",
                          flush=True)
                    time.sleep(0.5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # the throwaway keys
    meta["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    loads = [r["other_load"] for r in runs if "other_load" in r]
    meta["other_load_median"] = B.med(loads) or 0.0
    meta["other_load_max"] = max(loads) if loads else 0.0
    meta["counts"] = counts
    rows = summarize(runs, specs)
    table = render(meta, rows, runs, idle)
    print("\n" + table, flush=True)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(dict(meta=meta, runs=runs, rows=rows, idle=idle), f, indent=1)
    print(f"\n# data: {outdir}/results.json", flush=True)
    failed = [r for r in runs if not r["ok"]] + [i for i in idle if i.get("held") != i.get("n")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
