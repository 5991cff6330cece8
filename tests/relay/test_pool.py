"""PureProxy reuses upstream connections (relay_pool).

Messages from clients one after another go over fewer upstream connections
than messages; a pooled connection that died (upstream restarted, or closed
it unseen) costs the client nothing: the relay retries on a fresh one. An
idle pooled connection that expires is ended with QUIT; one the upstream
closes while idle is routine (an "info" line, no warning).
"""

import signal
import threading
import time

import relay_harness as h


class Pool(h.RelayTestCase):

    def recorder(self, **kw):
        r = h.Recorder(**kw)
        self.cleanups.append(r.cleanup)
        return r


    def send(self, proxy, n_clients, per_client=1, tag="m"):
        """Clients one after another, each on its own connection."""
        sent = []
        for i in range(n_clients):
            with h.Client(proxy.port) as c:
                for j in range(per_client):
                    subject = "%s-%d-%d" % (tag, i, j)
                    self.assertEqual(c.cmd("MAIL FROM:<a%d@example.com>" % i)[0], 250)
                    self.assertEqual(c.cmd("RCPT TO:<b%d@example.com>" % j)[0], 250)
                    d, end = c.data(h.message(subject=subject))
                    self.assertEqual(end[0], 250, "%s: %r\n%s" % (subject, end,
                                                                  proxy.stderr_text()))
                    sent.append(subject)
        return sent

    def subjects(self, rec):
        out = []
        for m in rec.messages():
            for line in m["data"].split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    out.append(line[9:].decode())
        return out

    def test_sequential_clients_share_one_connection(self):
        rec = self.recorder()
        proxy = self.proxy(rec.port)
        sent = self.send(proxy, 5) + self.send(proxy, 2, per_client=3, tag="multi")
        msgs = rec.wait_messages(len(sent))
        self.assertEqual(self.subjects(rec), sent)
        conns = rec.connections()
        self.assertLess(len(conns), len(sent))
        # One after another, every message can take the same connection.
        self.assertEqual(len(conns), 1, "upstream connections: %r" % conns)
        self.assertEqual({tuple(m["peer"]) for m in msgs}, {tuple(conns[0]["peer"])})

    def test_concurrent_clients(self):
        rec = self.recorder()
        proxy = self.proxy(rec.port)
        errors = []
        n_threads, per_thread = 6, 4

        def client(i):
            try:
                for j in range(per_thread):
                    code = h.send_one(proxy.port, body=h.message(subject="c-%d-%d" % (i, j)))
                    if code[0] != 250:
                        errors.append(code)
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        total = n_threads * per_thread
        msgs = rec.wait_messages(total)
        self.assertEqual(len(msgs), total)
        self.assertEqual(sorted(self.subjects(rec)),
                         sorted("c-%d-%d" % (i, j) for i in range(n_threads)
                                for j in range(per_thread)))
        conns = rec.connections()
        self.assertLess(len(conns), total, "no connection was reused")

    def restart(self, sig):
        rec = self.recorder()
        proxy = self.proxy(rec.port)
        sent = self.send(proxy, 3, tag="before")
        self.assertEqual(len(rec.connections()), 1)
        # Restart the upstream on the same port; the pooled connection dies.
        rec.close(sig)
        self.assertTrue(h.port_closed(rec.port))
        rec2 = self.recorder(port=rec.port)
        after = self.send(proxy, 3, tag="after")
        rec2.wait_messages(len(after))
        self.assertEqual(self.subjects(rec2), after)
        self.assertEqual(self.subjects(rec), sent)
        self.assertEqual(len(rec2.connections()), 1)

    def test_upstream_restarted(self):
        self.restart(signal.SIGTERM)

    def test_upstream_killed_and_restarted(self):
        self.restart(signal.SIGKILL)

    def test_sink_restarted_between_messages(self):
        sink = h.SmtpSink()
        self.cleanups.append(sink.close)
        proxy = self.proxy(sink.port)
        for i in range(3):
            self.assertEqual(h.send_one(proxy.port)[0], 250)
            sink.close(signal.SIGKILL)
            sink = h.SmtpSink(port=sink.port)
            self.cleanups.append(sink.close)
        self.assertEqual(h.send_one(proxy.port)[0], 250)

    def test_dead_pooled_connection_is_retried(self):
        # The upstream drops a used connection when the next MAIL comes:
        # closed without a reply (the relay cannot have seen it die while
        # idle), or with a 421 (RFC 5321 3.8). The relay must retry on a
        # fresh connection, and the client gets 250.
        for how in ("close", "421"):
            with self.subTest(how=how):
                fake = h.FakeUpstream(mail_on_reuse=how)
                self.cleanups.append(fake.stop)
                proxy = self.proxy(fake.port)
                for i in range(4):
                    end = h.send_one(proxy.port, body=h.message(subject="stale-%d" % i))
                    self.assertEqual(end[0], 250,
                                     "message %d: %r\n%s" % (i, end, proxy.stderr_text()))
                self.assertEqual(len(fake.delivered), 4)
                # Each reuse found a dead connection and opened a new one.
                self.assertEqual(fake.connections, 4)
                # Within one client session too.
                with h.Client(proxy.port) as c:
                    for i in range(2):
                        self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
                        self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
                        self.assertEqual(c.data(h.message())[1][0], 250)
                self.assertEqual(len(fake.delivered), 6)

    def test_upstream_closing_at_mail(self):
        # A fresh connection whose MAIL gets 421 (the upstream timed the
        # session out, or is going down): one more try on a new connection.
        # If that fails too, the client gets the 421 and retries itself.
        fake = h.FakeUpstream(mail_421=1)
        self.cleanups.append(fake.stop)
        proxy = self.proxy(fake.port)
        self.assertEqual(h.send_one(proxy.port)[0], 250, proxy.stderr_text())
        self.assertEqual((fake.connections, len(fake.delivered)), (2, 1))
        fake2 = h.FakeUpstream(mail_421=2)
        self.cleanups.append(fake2.stop)
        proxy2 = self.proxy(fake2.port)
        with h.Client(proxy2.port) as c:
            code, text = c.cmd("MAIL FROM:<a@example.com>")
            self.assertEqual(code, 421, text)
            self.assertEqual(fake2.connections, 2)
        # Not a third try within the same command; the client's retry works.
        self.assertEqual(h.send_one(proxy2.port)[0], 250, proxy2.stderr_text())
        self.assertEqual((fake2.connections, len(fake2.delivered)), (3, 1))

    def eight_at_once(self, fake, proxy):
        """Eight transactions at once (eight upstream connections), then
        all finished; the client sessions stay open."""
        clients = []
        for i in range(8):
            c = h.Client(proxy.port)
            self.cleanups.append(c.close)
            self.assertEqual(c.cmd("MAIL FROM:<a%d@example.com>" % i)[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            clients.append(c)
        self.assertEqual(fake.connections, 8)
        for c in clients:
            self.assertEqual(c.data(h.message())[1][0], 250)
        self.assertEqual(len(fake.delivered), 8)
        deadline = time.monotonic() + 3
        while fake.closed_by_relay < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)

    def test_pool_is_small(self):
        # Once the eight are done at most the pool's size (4, the default)
        # stay open for reuse; the relay closes the rest.
        fake = h.FakeUpstream()
        self.cleanups.append(fake.stop)
        proxy = self.proxy(fake.port)
        self.eight_at_once(fake, proxy)
        self.assertEqual(fake.closed_by_relay, 4)
        # The four kept are reused: no new connection for the next four.
        for i in range(4):
            self.assertEqual(h.send_one(proxy.port)[0], 250)
        self.assertEqual(fake.connections, 8)

    def test_quit_when_closing_an_upstream_connection(self):
        # RFC 5321 4.1.1.10: the relay ends the connections it does not
        # keep with QUIT, not by just closing them.
        fake = h.FakeUpstream()
        self.cleanups.append(fake.stop)
        proxy = self.proxy(fake.port)
        self.eight_at_once(fake, proxy)
        self.assertEqual(fake.closed_by_relay, 4)
        self.assertEqual(fake.commands.count(b"QUIT\r\n"), 4,
                         "connections closed without QUIT")

    def test_upstream_by_name(self):
        # remotehost given as a name ("localhost", from /etc/hosts through
        # the relay's resolver): it may also resolve to ::1, where nothing
        # listens; the relay goes on to 127.0.0.1.
        rec = self.recorder()
        proxy = self.proxy("localhost:%d" % rec.port)
        for i in range(2):
            self.assertEqual(h.send_one(proxy.port)[0], 250, proxy.stderr_text())
        self.assertEqual(len(rec.wait_messages(2)), 2)

    def test_no_reuse_after_refused_transaction_leaks_state(self):
        # A transaction refused at RCPT is reset upstream before the
        # connection is reused: the next message has only its own recipient.
        rec = self.recorder()
        proxy = self.proxy(rec.port)
        with h.Client(proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<first@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<one@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<reject-x@example.com>")[0], 550)
            self.assertEqual(c.cmd("RSET")[0], 250)
        with h.Client(proxy.port) as c:
            self.assertEqual(c.cmd("MAIL FROM:<second@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<two@example.com>")[0], 250)
            self.assertEqual(c.data(h.message())[1][0], 250)
        (m,) = rec.wait_messages(1)
        self.assertEqual(m["mail_from"], "second@example.com")
        self.assertEqual(m["rcpt_tos"], ["two@example.com"])
        # The first connection is back in the pool once its RSET is
        # answered; a client quicker than that gets a second one.
        self.assertLessEqual(len(rec.connections()), 2)

    # ---- idle pooled connections ----

    def test_idle_connection_expires_with_quit(self):
        # --relay-idle-timeout 1 instead of the default 30: the pooled
        # connection is ended with QUIT once it has been idle that long, not
        # before, and the next message opens a fresh one.
        up = h.ScriptedUpstream()
        self.cleanups.append(up.stop)
        proxy = self.proxy(up.port, "-d", idle_timeout=1)
        self.assertEqual(h.send_one(proxy.port)[0], 250, proxy.stderr_text())
        t0 = time.monotonic()
        first = up.conn(0)
        self.assertFalse(first.ended.wait(0.5), "closed before its idle time")
        self.assertTrue(first.ended.wait(1 + 2 * h.SLOW), "kept past its idle time:\n"
                        + proxy.stderr_text())
        self.assertGreater(time.monotonic() - t0, 0.8)
        self.assertEqual(first.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"])
        self.assertEqual(first.how, "quit")
        proxy.wait_stderr(rb"debug: upstream 127\.0\.0\.1:%d: idle for 1 s: closing\n" % up.port)
        self.assertNotIn(b"warning:", proxy.stderr())
        self.assertEqual(h.send_one(proxy.port)[0], 250)
        self.assertEqual((up.connections, len(up.delivered)), (2, 2))

    def test_default_idle_time_is_not_one_second(self):
        # By default the pooled connection outlives a second or two (30 s):
        # what the test above sees is --relay-idle-timeout's doing.
        up = h.ScriptedUpstream()
        self.cleanups.append(up.stop)
        proxy = self.proxy(up.port)
        self.assertEqual(h.send_one(proxy.port)[0], 250)
        self.assertFalse(up.conn(0).ended.wait(2.5), "closed before 30 s")
        self.assertEqual(h.send_one(proxy.port)[0], 250)
        self.assertEqual(up.connections, 1)

    def idle_closed(self, after_reply, log):
        """The upstream ends a pooled connection while it is idle: an info
        line (@log), no warning; the next message takes a fresh one."""
        up = h.ScriptedUpstream({".": ("250 2.0.0 Ok: queued", 0.3) + after_reply}, scripted=1)
        self.cleanups.append(up.stop)
        proxy = self.proxy(up.port)
        self.assertEqual(h.send_one(proxy.port)[0], 250)
        proxy.wait_stderr(rb"info: upstream 127\.0\.0\.1:%d: " % up.port + log)
        self.assertNotIn(b"warning:", proxy.stderr())
        self.assertEqual(h.send_one(proxy.port)[0], 250, proxy.stderr_text())
        self.assertEqual((up.connections, len(up.delivered)), (2, 2))

    def test_upstream_closes_an_idle_connection(self):
        self.idle_closed(("close",), rb"connection closed by the upstream\n")

    def test_upstream_421_on_an_idle_connection(self):
        # RFC 5321 3.8: a server that is going away says 421 first.
        self.idle_closed(("421 4.4.2 scripted.upstream Error: timeout exceeded", "close"),
                         rb"closing: 421 4\.4\.2 scripted\.upstream Error: timeout exceeded\n")


if __name__ == "__main__":
    h.main()
