"""PureProxy stops on SIGTERM/SIGINT (relay_shutdown).

Like every class, the relay must end when told to: no client, pooled idle
upstream connections or the name resolver may keep it running. A
transaction waiting for the upstream is answered (never left hanging, never
250 for what the upstream did not take) before the program exits.
"""

import signal
import subprocess
import threading
import time

import relay_harness as h


class Shutdown(h.RelayTestCase):


    def assertStops(self, proxy, sig, within=5):
        # "listening on" is logged before the signal handlers are set up;
        # give them a moment (that race is not what this test is about).
        time.sleep(0.2)
        t0 = time.monotonic()
        proxy.proc.send_signal(sig)
        try:
            rc = proxy.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.fail("PureProxy still runs %ds after %s (no client session open):\n%s"
                      % (within, sig.name, proxy.stderr_text()))
        self.assertEqual(rc, 0, proxy.stderr_text())
        return time.monotonic() - t0

    def test_sigterm_without_any_upstream_use(self):
        with h.FakeUpstream() as fake:
            proxy = self.proxy(fake.port)
            self.assertStops(proxy, signal.SIGTERM)
            self.assertEqual(fake.connections, 0)

    def test_sigint(self):
        with h.FakeUpstream() as fake:
            proxy = self.proxy(fake.port)
            self.assertStops(proxy, signal.SIGINT)

    def test_sigterm_with_pooled_upstream_connection(self):
        with h.FakeUpstream() as fake:
            proxy = self.proxy(fake.port)
            self.assertEqual(h.send_one(proxy.port)[0], 250)
            self.assertEqual(fake.connections, 1)
            self.assertStops(proxy, signal.SIGTERM)
            # The idle upstream connection was ended politely.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and b"QUIT\r\n" not in fake.commands:
                time.sleep(0.02)
            self.assertIn(b"QUIT\r\n", fake.commands)

    def test_sigterm_while_upstream_is_slow(self):
        # The upstream never answers the final dot; SIGTERM comes while the
        # client waits. The client gets a 4xx (the relay timeout or a 421)
        # and the program ends.
        with h.FakeUpstream(hang=["."]) as fake:
            proxy = self.proxy(fake.port, relay_timeout=2)
            c = h.Client(proxy.port, timeout=30)
            self.cleanups.append(c.close)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(h.stuff(h.message()) + b".\r\n")
            time.sleep(0.3)
            proxy.proc.send_signal(signal.SIGTERM)
            reply = c.reply()
            self.assertEqual(reply[0] // 100, 4, reply)
            try:
                proxy.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.fail("PureProxy still runs 10s after SIGTERM:\n" + proxy.stderr_text())
            self.assertEqual(fake.delivered, [])


if __name__ == "__main__":
    h.main()
