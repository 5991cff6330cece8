#!/usr/bin/python3
"""Load run of PureProxy (a benchmark, not a CTest test).

    /usr/bin/python3 bench/relay_load.py [--smtpd build/smtpd] [--clients 20]
        [--messages 10000] [--size 1024] [--restarts 2]

Everything runs on 127.0.0.1 free ports, with Postfix's smtp-sink (Debian
package postfix) as the upstream:

1. Throughput, same machine, same moment:
   a. smtp-source -s CLIENTS -m MESSAGES -l SIZE straight to smtp-sink;
   b. the same smtp-source through `smtpd -c PureProxy` to smtp-sink.
   smtp-source aborts on any unexpected reply, so a clean exit means every
   message was accepted.
2. The checked run: CLIENTS Python client threads send MESSAGES messages,
   each with its own id, one message per connection (like smtp-source),
   through PureProxy to an smtp-sink that dumps every message to a file
   (-d); the sink is restarted RESTARTS times during the run (SIGTERM once,
   then SIGKILL). A message refused with 4xx or cut off is retried, as a
   real client would. At the end every message a client saw accepted (250
   after the final dot) must be in the sink's dumps; duplicates (the sink
   took a message but died before its 250 reached the relay) are counted
   but allowed. smtp-source straight to the dumping sink gives the figure
   beside it.

Exit status 0 when nothing accepted was lost and every message was
accepted in the end; 1 otherwise.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import SMTP_SINK, SMTP_SOURCE, RawClient, SmtpSink  # noqa: E402


class Sink(SmtpSink):
    """smtp-sink -m 1000, backlog 1000; dump_dir: it dumps every message."""

    def __init__(self, port=None, dump_dir=None):
        # A fixed port (a restart) may still be held a moment after a
        # SIGKILL: up to 20 tries.
        super().__init__("-m", "1000", port=port, dump_dir=dump_dir, backlog=1000, tries=20)

    stop = SmtpSink.close


class Proxy(smtpdtest.Smtpd):
    """PureProxy to 127.0.0.1:upstream_port; its log goes to log_path when
    it is stopped."""

    TERM_WAIT = 1  # SIGTERM, then SIGKILL if it does not end

    def __init__(self, upstream_port, log_path):
        super().__init__("--relay-timeout", "5", "--hostname", "relay.bench", cls="PureProxy",
                         extra=["127.0.0.1:%d" % upstream_port], stdout=subprocess.DEVNULL)
        self.log_path = log_path

    def stop(self):
        self.close()
        with open(self.log_path, "wb") as f:
            f.write(self.stderr())


def smtp_source(port, clients, messages, size):
    t0 = time.monotonic()
    r = subprocess.run([SMTP_SOURCE, "-s", str(clients), "-m", str(messages), "-l", str(size),
                        "-f", "a@example.com", "-t", "b@example.com", "127.0.0.1:%d" % port],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit("smtp-source failed (%d): %s" % (r.returncode, r.stderr.decode()[-500:]))
    return messages / took, took


# ---- the checked run: Python clients with per-message accounting ----

def make_message(i, size):
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n"
    body = line * max(1, size // len(line))
    return (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: load %d\r\n"
            b"Message-ID: <bench-%d@client.example>\r\nX-Bench-Id: %d\r\n\r\n" % (i, i, i)
            + body + b"END-OF-BENCH-%d\r\n" % i)


def send_message(port, msg, i):
    """One message on one connection. Returns the final reply code; raises
    EOFError/OSError when the connection breaks."""
    c = RawClient(port, timeout=30)
    try:
        if c.reply()[0] != 220:
            return 421
        if c.command(b"EHLO client.example")[0] != 250:
            return 421
        code = c.command(b"MAIL FROM:<a%d@example.com>" % i)[0]
        if code != 250:
            return code
        code = c.command(b"RCPT TO:<b%d@example.com>" % i)[0]
        if code != 250:
            return code
        code = c.command(b"DATA")[0]
        if code != 354:
            return code
        c.send(msg + b".\r\n")
        code = c.reply()[0]
        try:
            c.send(b"QUIT\r\n")
        except OSError:
            pass
        return code
    finally:
        c.close()


class Run:
    def __init__(self, port, n, clients, size):
        self.port = port
        self.n = n
        self.size = size
        self.lock = threading.Lock()
        self.next = 0
        self.accepted = {}       # id -> number of 250s the clients saw
        self.attempts = 0
        self.soft = 0            # 4xx replies
        self.broken = 0          # connections cut
        self.hard = []           # 5xx: never expected
        self.gave_up = []
        self.threads = [threading.Thread(target=self.client) for _ in range(clients)]

    def take(self):
        with self.lock:
            if self.next >= self.n:
                return None
            i = self.next
            self.next += 1
            return i

    def client(self):
        while True:
            i = self.take()
            if i is None:
                return
            msg = make_message(i, self.size)
            for attempt in range(400):
                with self.lock:
                    self.attempts += 1
                try:
                    code = send_message(self.port, msg, i)
                except (EOFError, OSError):
                    with self.lock:
                        self.broken += 1
                    time.sleep(0.05)
                    continue
                if code == 250:
                    with self.lock:
                        self.accepted[i] = self.accepted.get(i, 0) + 1
                    break
                if code >= 500:
                    with self.lock:
                        self.hard.append((i, code))
                    break
                with self.lock:
                    self.soft += 1
                time.sleep(0.05)
            else:
                with self.lock:
                    self.gave_up.append(i)

    def done(self):
        with self.lock:
            return len(self.accepted) + len(self.hard) + len(self.gave_up)


def delivered_ids(dump_dirs):
    """id -> times a complete copy is in the sink dumps."""
    rx_id = re.compile(rb"\nX-Bench-Id: (\d+)\n")
    out = {}
    for d in dump_dirs:
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            m = rx_id.search(data)
            if not m:
                continue
            i = int(m.group(1))
            if b"\nEND-OF-BENCH-%d\n" % i not in data:
                continue   # cut off in mid-data: not delivered
            out[i] = out.get(i, 0) + 1
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtpd", default=os.environ.get("SMTPD_BIN",
                                                      os.path.join(HERE, "..", "build", "smtpd")))
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the dumps and logs")
    args = ap.parse_args()
    for tool in (SMTP_SINK, SMTP_SOURCE, args.smtpd):
        if not os.access(tool, os.X_OK):
            raise SystemExit("missing: %s" % tool)
    smtpd = smtpdtest.paths["smtpd"] = os.path.abspath(args.smtpd)
    tmp = tempfile.mkdtemp(prefix="relay-load-")
    os.chmod(tmp, 0o711)
    procs = []
    ok = True
    try:
        print("relay_load: %d clients, %d messages of %d bytes, %d upstream restarts"
              % (args.clients, args.messages, args.size, args.restarts))
        print("smtpd: %s" % smtpd)

        # 1. smtp-source straight and through the relay, smtp-sink without dumps.
        sink = Sink()
        procs.append(sink)
        direct, t_direct = smtp_source(sink.port, args.clients, args.messages, args.size)
        proxy = Proxy(sink.port, os.path.join(tmp, "proxy1.log"))
        procs.append(proxy)
        relayed, t_relayed = smtp_source(proxy.port, args.clients, args.messages, args.size)
        proxy.stop()
        sink.stop()

        # 2. The checked run: dumping sink, restarts, Python clients.
        dump_dirs = [os.path.join(tmp, "dump-direct")]
        sink = Sink(dump_dir=dump_dirs[0])
        procs.append(sink)
        direct_dump, _ = smtp_source(sink.port, args.clients, args.messages, args.size)
        n_direct_dump = len(os.listdir(dump_dirs[0]))
        sink.stop()

        port = sink.port
        dump_dirs = [os.path.join(tmp, "dump-0")]
        sink = Sink(port=port, dump_dir=dump_dirs[0])
        procs.append(sink)
        proxy = Proxy(port, os.path.join(tmp, "proxy2.log"))
        procs.append(proxy)
        run = Run(proxy.port, args.messages, args.clients, args.size)
        restarts = []
        t0 = time.monotonic()
        for t in run.threads:
            t.start()
        for k in range(args.restarts):
            at = args.messages * (k + 1) // (args.restarts + 1)
            while run.done() < at and any(t.is_alive() for t in run.threads):
                time.sleep(0.01)
            sig = signal.SIGTERM if k % 2 == 0 else signal.SIGKILL
            t_stop = time.monotonic()
            sink.stop(sig)
            time.sleep(0.5)
            dump_dirs.append(os.path.join(tmp, "dump-%d" % (k + 1)))
            sink = Sink(port=port, dump_dir=dump_dirs[-1])
            procs.append(sink)
            restarts.append((run.done(), sig.name, time.monotonic() - t_stop))
        for t in run.threads:
            t.join()
        took = time.monotonic() - t0
        time.sleep(0.3)
        proxy_alive = proxy.proc.poll() is None
        proxy.stop()
        sink.stop()

        delivered = delivered_ids(dump_dirs)
        accepted = set(run.accepted)
        lost = sorted(accepted - set(delivered))
        dup = sum(1 for i in delivered if delivered[i] > 1)
        twice = [i for i, c in run.accepted.items() if c > 1]

        print()
        print("Throughput (messages/second, one message per connection):")
        print("  smtp-source -> smtp-sink                      %8.0f  (%.2f s)"
              % (direct, t_direct))
        print("  smtp-source -> PureProxy -> smtp-sink         %8.0f  (%.2f s, %.0f%% of direct)"
              % (relayed, t_relayed, 100.0 * relayed / direct))
        print("  smtp-source -> smtp-sink -d (dumping)         %8.0f  (%d messages dumped)"
              % (direct_dump, n_direct_dump))
        print("  %d Python clients -> PureProxy -> smtp-sink -d, %d restarts:"
              % (args.clients, args.restarts))
        print("                                                %8.0f  (%.2f s)"
              % (len(accepted) / took, took))
        print()
        print("Checked run:")
        for done, sig, down in restarts:
            print("  upstream restarted (%s) after %d messages, down %.2f s" % (sig, done, down))
        print("  attempts %d: accepted %d, 4xx %d, connections cut %d, 5xx %d, gave up %d"
              % (run.attempts, len(accepted), run.soft, run.broken, len(run.hard),
                 len(run.gave_up)))
        print("  at the upstream: %d distinct messages, %d of them more than once"
              % (len(delivered), dup))
        print("  accepted but not at the upstream (lost): %d %s"
              % (len(lost), lost[:20] if lost else ""))
        print("  PureProxy still running at the end: %s" % proxy_alive)
        ok = (not lost and len(accepted) == args.messages and not run.hard and not twice
              and proxy_alive and n_direct_dump == args.messages)
        print("RESULT: %s" % ("PASS" if ok else "FAIL"))
    finally:
        for p in procs:
            p.stop()
        if args.keep:
            print("kept: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
