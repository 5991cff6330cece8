#!/usr/bin/python3
"""Scaling out (issue 15): messages/s through HAProxy (mode tcp,
send-proxy-v2, balance leastconn) to 1 and to 3 smtpd backends
(`smtpd -n -c Sink --proxy-protocol`), beside one smtpd without HAProxy.

    python3 bench/haproxy.py [--messages 20000] [--reps 3] [--smtpd build/smtpd]

Load: Postfix's smtp-source, 20 sessions, 1 KB messages, a new connection
per message (setting "c": each connection is balanced, and carries a PROXY
header) and 20 connections kept for every message (setting "d", smtp-source
-d: HAProxy balances only the 20 connects). Each configuration is started
in turn, measured --reps times, stopped. Per run: msg/s = messages / wall
clock of smtp-source; CPU = the busy CPU seconds of the whole machine
(/proc/stat) per 1,000 messages (HAProxy, the backends and smtp-source
together). Not pinned: on a 2-CPU machine smtp-source, HAProxy and the
backends share the two CPUs, so 3 backends cannot be 3 times 1; the table
is the ratio, and the CPU per message says what HAProxy costs.

It installs nothing and builds nothing. Needs smtp-source (postfix),
/usr/sbin/haproxy (haproxy) and a built smtpd. Exit status 0 when every run
sent every message.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "pylib"))
from smtpdtest import SMTP_SOURCE, free_port, need, wait_port  # noqa: E402
from run import Server, client_argv, machine_busy, med, run_client  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
SETTINGS = {"c": ("-s 20", "20 sessions, a new connection per message"),
            "d": ("-s 20 -d", "20 sessions, each connection kept for all its messages")}


def haproxy_config(port, backends):
    servers = "\n".join("    server s%d 127.0.0.1:%d send-proxy-v2" % (i, p)
                        for i, p in enumerate(backends))
    return """global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend smtp
    bind 127.0.0.1:%d
    default_backend smtpd
backend smtpd
    balance leastconn
%s
""" % (port, servers)


class Silent(Server):
    """A server that sends no greeting before a PROXY header (a backend
    with --proxy-protocol, or HAProxy in front of them): ready once it
    accepts connections."""

    def start(self, timeout=20.0):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_port(self.port, timeout, self.proc):
            raise RuntimeError("%s on port %d did not start" % (self.label, self.port))
        self.refresh()
        return self


def start_config(smtpd, n, tmp):
    """n backends behind HAProxy (n 0: one smtpd, no HAProxy); the
    servers and the port to send to."""
    servers = []
    ports = []
    try:
        for i in range(max(n, 1)):
            port = free_port()
            argv = [smtpd, "-n", "-c", "Sink", "--max-connections", "5000"]
            if n:
                argv.append("--proxy-protocol")
            cls = Silent if n else Server
            servers.append(cls("smtpd%d" % i, argv + ["127.0.0.1:%d" % port], port))
            servers[-1].start()
            ports.append(port)
        if not n:
            return servers, ports[0]
        port = free_port()
        cfg = os.path.join(tmp, "haproxy-%d.cfg" % n)
        with open(cfg, "w") as f:
            f.write(haproxy_config(port, ports))
        servers.append(Server("haproxy", [HAPROXY, "-db", "-f", cfg], port))
        servers[-1].start()
        return servers, port
    except BaseException:
        for sv in servers:  # those started so far
            if sv.proc is not None:
                sv.stop()
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--smtpd", default=os.path.join(REPO, "build", "smtpd"))
    ap.add_argument("--timeout", type=float, default=300.0)
    a = ap.parse_args()
    need(SMTP_SOURCE, "postfix")
    need(HAPROXY, "haproxy")
    tmp = tempfile.mkdtemp(prefix="bench-haproxy-")
    configs = [(0, "one smtpd, no HAProxy"), (1, "HAProxy -> 1 smtpd"),
               (3, "HAProxy -> 3 smtpd")]
    results = {}
    ok = True
    try:
        for n, what in configs:
            servers, port = start_config(a.smtpd, n, tmp)
            try:
                run_client(client_argv("source", "-s 20 -l %d" % a.size, 1000, port, None), None,
                           a.timeout)  # warm-up
                for s, (args, _) in SETTINGS.items():
                    for rep in range(a.reps):
                        argv = client_argv("source", "%s -l %d" % (args, a.size), a.messages,
                                           port, None)
                        b0 = machine_busy()
                        rc, wall, to, out, err = run_client(argv, None, a.timeout)
                        busy = machine_busy() - b0
                        good = rc == 0 and not to and all(sv.alive() for sv in servers)
                        ok = ok and good
                        rate = a.messages / wall if good else None
                        results.setdefault((n, s), []).append((rate, busy * 1000 / a.messages))
                        print("  %-22s %s rep %d: %s msg/s, %.3f CPU s / 1000 msg%s"
                              % (what, s, rep + 1, "%.0f" % rate if rate else "FAILED",
                                 busy * 1000 / a.messages, "" if good else " " + (out + err)[-200:]),
                              flush=True)
                        time.sleep(1.0)  # TIME_WAIT of the last run's connections settles
            finally:
                for sv in servers:
                    sv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n%d messages of %d bytes per run, %d reps (medians), %d CPUs\n"
          % (a.messages, a.size, a.reps, os.cpu_count()))
    print("| setting | configuration | msg/s | machine CPU s / 1000 msg | ÷ HAProxy -> 1 |")
    print("|---|---|---|---|---|")
    for s, (_, desc) in SETTINGS.items():
        one = med([r for r, _ in results.get((1, s), [])])
        for n, what in configs:
            rs = results.get((n, s), [])
            rate, cpu = med([r for r, _ in rs]), med([c for _, c in rs])
            ratio = "%.2f×" % (rate / one) if rate and one else ""
            print("| %s (%s) | %s | %s | %s | %s |" % (s, desc, what, "%.0f" % rate if rate else "-",
                                                      "%.3f" % cpu if cpu else "-", ratio))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
