#!/usr/bin/python3
"""DATA against BDAT (CHUNKING, RFC 3030) into smtpd -c Sink, one run.

    python3 bench/chunking.py --smtpd build/smtpd [--messages 300] [--size 1048576] [--reps 3]

One client connection (Python, a raw socket) sends --messages messages of
--size octets (lines of 76 characters, one in ten starting with a dot, so
DATA has stuffing to do) in three ways, each a transaction of its own and
pipelined (MAIL, RCPT and the data in one write, then the replies read):

  data       DATA, the data dot-stuffed by the client, the final dot
  bdat-one   BDAT <size> LAST and the octets as they are
  bdat-64k   BDAT chunks of 65536 octets, the last with LAST

Per way: messages/s and MB/s over the wall clock of the whole run, and the
server's CPU seconds per 1,000 messages (utime+stime of /proc/PID/stat). The
client's own work (stuffing) is done before the clock starts. With --reps R
the ways are measured R times round robin and the median is shown. smtpd
runs on CPU 0 and the client on CPU 1 (taskset), as in bench/run.py.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
from smtpdtest import proc_cpu_seconds  # noqa: E402
from run import wait_ready  # noqa: E402  (bench/run.py)


def message(size):
    """A header, then 76-octet lines (one in ten starting with a dot), size octets in all."""
    out = [b"Subject: bench\r\n\r\n"]
    n = len(out[0])
    line = b"x" * 74 + b"\r\n"
    while n + 76 <= size:
        out.append(b"." + line[1:] if len(out) % 10 == 0 else line)
        n += 76
    if size - n >= 2:
        out.append(b"y" * (size - n - 2) + b"\r\n")
    return b"".join(out)


def stuffed(data):
    """Dot-stuffing (RFC 5321 4.5.2); the data ends in CRLF."""
    out = data.replace(b"\r\n.", b"\r\n..")
    return b"." + out if out.startswith(b".") else out


def wires(data):
    env = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    multi = b"".join(b"BDAT %d\r\n%s" % (len(c), c) for c in chunks[:-1])
    multi += b"BDAT %d LAST\r\n%s" % (len(chunks[-1]), chunks[-1])
    return {
        "data": (env + b"DATA\r\n" + stuffed(data) + b".\r\n", 4),
        "bdat-one": (env + b"BDAT %d LAST\r\n" % len(data) + data, 3),
        "bdat-64k": (env + multi, 2 + len(chunks)),
    }


def replies(sock, buf, n):
    """Read n single-line replies; every one must be 2xx or 354."""
    while buf.count(b"\r\n") < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("server closed the connection")
        buf += chunk
    lines = buf.split(b"\r\n")
    for l in lines[:n]:
        if not (l.startswith(b"2") or l.startswith(b"354")):
            raise SystemExit("unexpected reply %r" % l)
    return b"\r\n".join(lines[n:])


def run_way(port, wire, n_replies, count):
    s = socket.create_connection(("127.0.0.1", port))
    buf = replies(s, b"", 1)
    s.sendall(b"EHLO bench.example\r\n")
    while b"250 " not in buf:
        buf += s.recv(65536)
    buf = b""
    t0 = time.monotonic()
    for _ in range(count):
        s.sendall(wire)
        buf = replies(s, buf, n_replies)
    elapsed = time.monotonic() - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smtpd", default=os.path.join(HERE, "..", "build", "smtpd"))
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--size", type=int, default=1048576)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--port", type=int, default=25390)
    a = ap.parse_args()
    os.sched_setaffinity(0, {1})
    srv = subprocess.Popen(["taskset", "-c", "0", a.smtpd, "-n", "-c", "Sink", "-s", "0",
                            "127.0.0.1:%d" % a.port], stderr=subprocess.DEVNULL)
    try:
        wait_ready(a.port, 10, srv)
        ways = wires(message(a.size))
        runs = {w: [] for w in ways}
        for _ in range(a.reps):
            for w, (wire, n) in ways.items():
                cpu0 = proc_cpu_seconds(srv.pid)
                secs = run_way(a.port, wire, n, a.messages)
                cpu = proc_cpu_seconds(srv.pid) - cpu0
                runs[w].append((a.messages / secs, cpu * 1000 / a.messages))
        print("%d messages of %d octets per run, %d runs, medians\n" % (a.messages, a.size, a.reps))
        print("| way | msg/s | MB/s | server CPU s per 1,000 messages |")
        print("|---|---|---|---|")
        for w, rs in runs.items():
            rate = statistics.median(r[0] for r in rs)
            cpu = statistics.median(r[1] for r in rs)
            print("| %s | %.0f | %.0f | %.2f |" % (w, rate, rate * a.size / 1e6, cpu))
    finally:
        srv.terminate()
        srv.wait(10)


if __name__ == "__main__":
    main()
