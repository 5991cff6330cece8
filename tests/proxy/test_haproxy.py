"""HAProxy (Debian's haproxy, mode tcp) in front of three smtpd PureProxy
backends with --proxy-protocol, relaying to a recording upstream (aiosmtpd).

HAProxy is started by the test with a configuration of its own on loopback
(no service): balance leastconn, send-proxy-v2 (and in a second run
send-proxy, v1), health checks that carry a PROXY header too
(check-send-proxy) and speak SMTP (option smtpchk). Every connection to
smtpd comes from 127.0.0.1, HAProxy's address; the clients are bound to
127.0.0.2 and 127.0.0.3, and the PROXY header is what tells smtpd so.

- 1,000 messages from .2 and .3 all arrive upstream, once each, and X-Peer
  and Received name the client's own address; all three backends served.
- --relay-networks 127.0.0.2/32: only .2 relays, although every connection
  comes from HAProxy (127.0.0.1).
- One backend killed (SIGKILL) in mid-run: clients retry what got a 4xx or a
  dropped connection, and every message a client saw accepted is delivered
  exactly once (one the client could not know about, its connection lost
  after the final dot, at least once).
"""

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import proxy_harness as h

HAPROXY = "/usr/sbin/haproxy"
CLIENTS = ("127.0.0.2", "127.0.0.3")
PER_SOURCE = 500  # messages per client address: 1,000 in all
S = max(1, int(h.SLOW))  # every time limit below is multiplied by it (valgrind: 10)


class HAProxy:
    """haproxy -db -f <config> on a free port of 127.0.0.1 in front of the
    given backend ports."""

    def __init__(self, backends, send_proxy="send-proxy-v2"):
        h.need(HAPROXY, "haproxy")
        self.dir = tempfile.mkdtemp(prefix="smtpd-haproxy-")
        self.port = h.free_port()
        servers = "\n".join(
            "    server s%d 127.0.0.1:%d %s check check-send-proxy inter %dms fall 2 rise 1"
            % (i, p, send_proxy, 300 * S) for i, p in enumerate(backends))
        self.config = os.path.join(self.dir, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write("""global
    maxconn 4096
defaults
    mode tcp
    timeout connect %ds
    timeout client %ds
    timeout server %ds
    timeout check %ds
    retries 3
    option redispatch
frontend smtp
    bind 127.0.0.1:%d
    default_backend smtpd
backend smtpd
    balance leastconn
    option smtpchk EHLO haproxy.test
%s
""" % (2 * S, 30 * S, 30 * S, 2 * S, self.port, servers))
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.config],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.out = h.smtpdtest.Collector(self.proc.stdout)
        if not h.wait_port(self.port, 10, self.proc):
            self.close()
            raise AssertionError("haproxy did not start:\n%s" % self.out.data().decode())

    def close(self):
        h.stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Backend(h.Smtpd):
    """smtpd -c PureProxy --proxy-protocol, relaying to the recorder."""

    TERM_WAIT = 2

    def __init__(self, name, upstream_port, relay_networks):
        super().__init__("--proxy-protocol", "--hostname", name, "--relay-networks",
                         relay_networks, "--relay-timeout", str(5 * S), cls="PureProxy",
                         extra=["127.0.0.1:%d" % upstream_port], stdout=subprocess.DEVNULL)


def message(tag, source):
    return ("From: sender@example.org\r\nTo: rcpt@example.com\r\nMessage-ID: <%s@test>\r\n"
            "Subject: %s from %s\r\n\r\nbody of %s\r\n" % (tag, tag, source, tag)).encode()


class Outcome:
    """What the clients saw, per message tag."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {}       # tag -> source
        self.refused = {}        # tag -> (code, text)
        self.ambiguous = set()   # a try lost after its final dot
        self.failed = {}         # tag -> last error, after every retry
        self.retries = 0


def send_one(port, source, tag, out, tries=20):
    """One message through HAProxy from source, a new connection per try;
    a 4xx, a dropped connection or a refused connect is tried again."""
    last = None
    for attempt in range(tries):
        if attempt:
            with out.lock:
                out.retries += 1
            time.sleep(0.1)
        after_dot = False
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=15 * S, source_address=(source, 0)) as s:
                s.ehlo("client.example")
                code, text = s.mail("sender@example.org")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
                code, text = s.rcpt("rcpt@example.com")
                if code >= 500:
                    with out.lock:
                        out.refused[tag] = (code, text)
                    return
                if code != 250:
                    raise smtplib.SMTPResponseException(code, text)
                s.putcmd("data")
                code, text = s.getreply()
                if code != 354:
                    raise smtplib.SMTPResponseException(code, text)
                s.send(smtplib.quotedata(message(tag, source).decode()).encode() + b"\r\n.\r\n")
                after_dot = True
                code, text = s.getreply()
                if code == 250:
                    with out.lock:
                        out.accepted[tag] = source
                    return
                if code >= 500:
                    with out.lock:
                        out.refused[tag] = (code, text)
                    return
                raise smtplib.SMTPResponseException(code, text)
        except (OSError, smtplib.SMTPException) as e:
            last = e
            if after_dot:
                with out.lock:
                    out.ambiguous.add(tag)
    with out.lock:
        out.failed[tag] = repr(last)


def run_clients(port, per_source, out, threads_per_source=5, during=None):
    """per_source messages from each of CLIENTS, threads_per_source threads
    each; during(): called once about a third of the way through."""
    tags = {src: ["%s-%d-%s" % (src, i, uuid.uuid4().hex[:8]) for i in range(per_source)]
            for src in CLIENTS}
    done = [0]
    total = per_source * len(CLIENTS)
    fired = threading.Event()

    def worker(src, chunk):
        for tag in chunk:
            send_one(port, src, tag, out)
            with out.lock:
                done[0] += 1
                fire = during is not None and not fired.is_set() and done[0] >= total // 3
                if fire:
                    fired.set()
            if fire:
                during()

    threads = []
    for src in CLIENTS:
        for k in range(threads_per_source):
            chunk = tags[src][k::threads_per_source]
            threads.append(threading.Thread(target=worker, args=(src, chunk), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(240 * h.SLOW)
    return tags


class HAProxyTest(unittest.TestCase):

    def setUp(self):
        self.rec = h.Recorder()
        self.addCleanup(self.rec.cleanup)

    def backends(self, relay_networks, n=3):
        out = []
        for i in range(n):
            b = Backend("relay%d.test" % i, self.rec.port, relay_networks)
            self.addCleanup(b.close)
            out.append(b)
        return out

    def haproxy(self, backends, send_proxy):
        hp = HAProxy([b.port for b in backends], send_proxy)
        self.addCleanup(hp.close)
        # Health checks pass (rise 2) before the clients start.
        for b in backends:
            self.assertIsNotNone(b.wait_log(rb"connect from 127\.0\.0\.1:\d+ via proxy", 10 * S),
                                 b.stderr_text())
        time.sleep(1.0)
        return hp

    def delivered(self, n):
        """Recorder messages by tag, once n have arrived (or after 30 s)."""
        self.rec.wait_messages(n, 30 * S)
        by_tag = {}
        for m in self.rec.messages():
            data = m["data"]
            subject = [l for l in data.split(b"\r\n") if l.startswith(b"Subject: ")][0]
            by_tag.setdefault(subject.split()[1].decode(), []).append(m)
        return by_tag

    def thousand_messages(self, send_proxy):
        backends = self.backends("127.0.0.2/32,127.0.0.3/32")
        hp = self.haproxy(backends, send_proxy)
        out = Outcome()
        tags = run_clients(hp.port, PER_SOURCE, out)
        total = PER_SOURCE * len(CLIENTS)
        self.assertEqual(out.failed, {})
        self.assertEqual(out.refused, {})
        self.assertEqual(len(out.accepted), total)
        by_tag = self.delivered(total)
        self.assertEqual(sorted(by_tag), sorted(t for ts in tags.values() for t in ts))
        for tag, msgs in by_tag.items():
            self.assertEqual(len(msgs), 1, "%s delivered %d times" % (tag, len(msgs)))
            src = out.accepted[tag]
            data = msgs[0]["data"]
            self.assertIn(b"\r\nX-Peer: " + src.encode() + b"\r\n", data)
            self.assertIn(b"Received: from client.example ([" + src.encode() + b"])", data)
        # leastconn spread the sessions over every backend.
        for b in backends:
            n = len(b.err.data().split(b"message from=<sender@example.org>")) - 1
            self.assertGreater(n, 0, "backend %d got no message" % b.port)
        self.assertIn(b"via proxy 127.0.0.1:", backends[0].stderr())

    def test_thousand_messages_v2(self):
        self.thousand_messages("send-proxy-v2")

    def test_thousand_messages_v1(self):
        self.thousand_messages("send-proxy")

    def test_relay_networks_use_the_client_address(self):
        backends = self.backends("127.0.0.2/32", n=1)
        hp = self.haproxy(backends, "send-proxy-v2")
        out = Outcome()
        send_one(hp.port, "127.0.0.2", "allowed", out)
        send_one(hp.port, "127.0.0.3", "denied", out)
        send_one(hp.port, "127.0.0.1", "balancer", out)
        self.assertEqual(sorted(out.accepted), ["allowed"])
        self.assertEqual(sorted(out.refused), ["balancer", "denied"])
        for code, text in out.refused.values():
            self.assertEqual(code, 554, text)
        time.sleep(0.3)
        self.assertEqual(sorted(self.delivered(1)), ["allowed"])

    def test_backend_killed_mid_run(self):
        backends = self.backends("127.0.0.2/32,127.0.0.3/32")
        hp = self.haproxy(backends, "send-proxy-v2")
        out = Outcome()
        victim = backends[1]

        def kill():
            victim.proc.send_signal(signal.SIGKILL)

        per_source = max(30, PER_SOURCE * 3 // 10)
        tags = run_clients(hp.port, per_source, out, during=kill)
        self.assertIsNotNone(victim.proc.wait(5 * S))
        self.assertEqual(out.failed, {}, "messages given up after every retry")
        self.assertEqual(out.refused, {})
        self.assertEqual(len(out.accepted), per_source * len(CLIENTS))
        by_tag = self.delivered(per_source * len(CLIENTS))
        for tag in (t for ts in tags.values() for t in ts):
            copies = len(by_tag.get(tag, []))
            if tag in out.ambiguous:
                self.assertGreaterEqual(copies, 1, tag)
            else:
                self.assertEqual(copies, 1, "%s (seen accepted) delivered %d times" % (tag, copies))
        print("backend killed: %d retries, %d messages whose try was lost after the final dot"
              % (out.retries, len(out.ambiguous)))


if __name__ == "__main__":
    h.main()
