#!/usr/bin/python3
"""Profile pass for issue 6: user-space instructions per message (callgrind)
and system calls per message (strace -c), smtpd's Sink next to smtp-sink.

    bench/profile.py [--smtpd PATH] [-m 2000] [--out DIR] [--top 25] [--no-sink] [--no-strace]

Load: smtp-source -s 1 -d -l 1024 (one session, 1 KB messages, connection
reused).  The server is started under valgrind --tool=callgrind, warmed up
with 200 messages, its counters are zeroed (callgrind_control -z), then
exactly -m messages are sent and the counters dumped (callgrind_control -d),
so start-up and shutdown are not in the figures.  Instructions per message =
total Ir of the dump / m.  The report lists the functions with the most
self instructions (inlined code counts in its caller) and writes the raw
callgrind file and the callgrind_annotate output to --out.
"""
import argparse
import datetime
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402


def source(port, m, extra="-s 1 -d -l 1024"):
    return subprocess.run(["smtp-source", "-4", "-M", "localhost", "-f", "sender@localhost", "-t",
                           "rcpt@localhost", "-m", str(m)] + extra.split() + [f"{bench.HOST}:{port}"],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=600)


def server_cmd(kind, port, smtpd):
    if kind == "smtpd":
        return [smtpd, "-n", "-c", "Sink", "--hostname", "bench.local", f"{bench.HOST}:{port}"]
    return ["smtp-sink", "-u", "nobody", f"{bench.HOST}:{port}", "1000"]


def parse_annotate(text, total_only=False):
    total, rows = None, []
    for line in text.splitlines():
        mt = re.match(r"\s*([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS", line)
        if mt:
            total = int(mt.group(1).replace(",", ""))
            continue
        mf = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S.*)$", line)
        if mf and total is not None:
            ir, pct, fn = int(mf.group(1).replace(",", "")), float(mf.group(2)), mf.group(3)
            name, _, obj = fn.partition(" [")
            file_, _, func = name.rpartition(":")
            rows.append(dict(ir=ir, pct=pct, func=func or name, file=os.path.basename(file_) if file_ else "",
                             obj=os.path.basename(obj.rstrip("]")) if obj else ""))
    return total, rows


def callgrind(kind, port, smtpd, m, out, top):
    # smtp-sink as root must drop to another user (-u), and then neither
    # callgrind_control nor the final dump work; so run it (valgrind and
    # all) as "nobody" from the start, in a directory that user can write
    work = tempfile.mkdtemp(prefix=f"callgrind-{kind}.")
    os.chmod(work, 0o777)
    prefix = os.path.join(work, f"callgrind.{kind}")
    asuser = [] if kind == "smtpd" or os.getuid() != 0 else \
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    cmd = server_cmd(kind, port, smtpd)
    if asuser:
        cmd = [c for c in cmd if c not in ("-u", "nobody")]
    argv = asuser + ["valgrind", "--tool=callgrind", f"--vgdb-prefix={work}/vgdb",
                     f"--callgrind-out-file={prefix}.%p"] + cmd
    log = open(os.path.join(out, f"valgrind-{kind}.log"), "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        bench.wait_ready(port, 60, p)
        source(port, 200)
        subprocess.run(asuser + ["callgrind_control", f"--vgdb-prefix={work}/vgdb", "-z", str(p.pid)],
                       check=True, capture_output=True, timeout=60)
        t0 = time.monotonic()
        r = source(port, m)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"smtp-source failed: {r.stderr.decode()[-300:]}")
        subprocess.run(asuser + ["callgrind_control", f"--vgdb-prefix={work}/vgdb", "-d", f"bench-{m}",
                                 str(p.pid)], check=True, capture_output=True, timeout=120)
    finally:
        p.send_signal(signal.SIGTERM)          # the valgrind we started
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        log.close()
    dumps = sorted(f for f in glob.glob(f"{prefix}.{p.pid}.*") if not f.endswith(".txt"))
    if not dumps:
        raise RuntimeError("no callgrind dump")
    dump = os.path.join(out, os.path.basename(dumps[0]))
    shutil.move(dumps[0], dump)
    shutil.rmtree(work, ignore_errors=True)
    ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
                         capture_output=True, text=True).stdout
    inc = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                         capture_output=True, text=True).stdout
    with open(os.path.join(out, f"annotate-{kind}.txt"), "w") as f:
        f.write(ann)
    with open(os.path.join(out, f"annotate-inclusive-{kind}.txt"), "w") as f:
        f.write(inc)
    total, rows = parse_annotate(ann)
    # the frames that were on the stack when the counters were zeroed (main,
    # event_base_dispatch, ...) show up with the whole total: not self cost
    rows = [r for r in rows if r["ir"] < 0.99 * total]
    by_obj = {}
    for r in rows:
        by_obj[r["obj"]] = by_obj.get(r["obj"], 0) + r["ir"]
    _, irows = parse_annotate(inc)
    own = ("smtpd", "libsmtpd.so") if kind == "smtpd" else ("smtp-sink",)
    irows = [r for r in irows if r["obj"].startswith(own) and r["ir"] < 0.99 * total]
    return dict(kind=kind, total=total, per_msg=total / m if total else None, wall=wall, rows=rows[:top],
                by_obj=sorted(by_obj.items(), key=lambda kv: -kv[1]), inclusive=irows[:top], dump=dump)


def strace_count(kind, port, smtpd, m, out):
    argv = server_cmd(kind, port, smtpd)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    sfile = os.path.join(out, f"strace-{kind}.txt")
    st = None
    try:
        bench.wait_ready(port, 20, p)
        source(port, 200)
        st = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", sfile, "-p", str(p.pid)])
        time.sleep(1.0)
        source(port, m)
        time.sleep(0.3)
    finally:
        if st is not None:
            st.send_signal(signal.SIGINT)       # the strace we started: detach, write the summary
            st.wait(20)
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    calls = {}
    for line in open(sfile):
        t = line.split()
        if len(t) >= 5 and t[0][0].isdigit() and t[-1] != "total":
            try:
                calls[t[-1]] = int(t[3])
            except ValueError:
                pass
    return dict(total=sum(calls.values()) / m, top={k: v / m for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:8]})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtpd")
    ap.add_argument("-m", type=int, default=2000)
    ap.add_argument("--out")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--port", type=int, default=25290)
    ap.add_argument("--no-sink", action="store_true", help="skip smtp-sink")
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--no-build", action="store_true", help="use build-bench/smtpd as it is")
    a = ap.parse_args()
    smtpd = bench.ensure_smtpd(a.smtpd, not a.no_build)
    out = os.path.abspath(a.out or os.path.join(HERE, "out", "profile-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")))
    os.makedirs(out, exist_ok=True)
    kinds = ["smtpd"] + ([] if a.no_sink else ["sink"])
    res = {}
    for i, k in enumerate(kinds):
        res[k] = callgrind(k, a.port + i, smtpd, a.m, out, a.top)
        if not a.no_strace:
            res[k]["syscalls"] = strace_count(k, a.port + 10 + i, smtpd, a.m, out)
    L = [f"Profile {datetime.datetime.now().isoformat(timespec='seconds')}: smtp-source -s 1 -d -l 1024 -m {a.m} "
         f"(after 200 warm-up messages); user-space instructions from callgrind, system calls from strace -c.", ""]
    for k in kinds:
        r = res[k]
        sc = r.get("syscalls")
        L.append(f"**{k}**: {r['per_msg']:,.0f} instructions per message (total {r['total']:,} Ir)"
                 + (f"; {sc['total']:.1f} syscalls per message ("
                    + ", ".join(f"{n} {v:.1f}" for n, v in sc["top"].items()) + ")" if sc else ""))
        L.append("")
        L.append("| % of Ir | Ir per msg | function | file | object |")
        L.append("|---|---|---|---|---|")
        for row in r["rows"]:
            L.append(f"| {row['pct']:.1f} | {row['ir'] / a.m:,.0f} | {row['func']} | {row['file']} | {row['obj']} |")
        L.append("")
        L.append("Self instructions by object: " + ", ".join(
            f"{o or '?'} {100 * v / r['total']:.0f}%" for o, v in r["by_obj"][:6]))
        L.append("")
        if r["inclusive"]:
            L.append(f"Inclusive cost of {k}'s own functions (callees included):")
            L.append("")
            L.append("| % of Ir | Ir per msg | function |")
            L.append("|---|---|---|")
            for row in r["inclusive"]:
                L.append(f"| {row['pct']:.1f} | {row['ir'] / a.m:,.0f} | {row['func']} |")
            L.append("")
    text = "\n".join(L)
    print(text)
    with open(os.path.join(out, "profile.md"), "w") as f:
        f.write(text + "\n")
    print(f"# raw: {out}")


if __name__ == "__main__":
    main()
