"""PureProxy is never an open relay (relay_networks).

Only clients whose address is in --relay-networks (default 127.0.0.0/8 and
::1/128) may relay; others get 554 5.7.1 at RCPT TO and nothing reaches the
upstream, not even a connection.
"""

import subprocess
import time
import unittest

import relay_harness as h


class RelayNetworks(unittest.TestCase):

    def setUp(self):
        self.rec = h.Recorder()
        self.proxies = []

    def tearDown(self):
        for p in self.proxies:
            p.close()
        self.rec.cleanup()

    def proxy(self, *options, listen="127.0.0.1:0"):
        p = h.Proxy(self.rec.port, *options, listen=listen)
        self.proxies.append(p)
        return p

    def denied(self, proxy, source=None, host="127.0.0.1"):
        with h.Client(proxy.port, source=source, host=host) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            for rcpt in ("b@example.com", "postmaster@example.com", "c@example.org"):
                code, text = c.cmd("RCPT TO:<%s>" % rcpt)
                self.assertEqual(code, 554, text)
                self.assertTrue(text.startswith("5.7.1 "), text)
            d, end = c.data(h.message())
            self.assertNotEqual(d[0], 354, "DATA without an accepted recipient: %r" % (d,))
            self.assertIsNone(end)
            # The session goes on (RSET, NOOP), still denied.
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 554)
        time.sleep(0.2)
        self.assertEqual(self.rec.messages(), [], "a denied client's mail reached the upstream")
        self.assertEqual(self.rec.connections(), [],
                         "a denied client made the relay connect upstream")

    def relays(self, proxy, source=None, host="127.0.0.1", peer="127.0.0.1"):
        before = len(self.rec.messages())
        msg = h.message(subject="from %s" % peer)
        with h.Client(proxy.port, source=source, host=host) as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 250)
            d, end = c.data(msg)
            self.assertEqual(end[0], 250, end)
        msgs = self.rec.wait_messages(before + 1)
        self.assertEqual(len(msgs), before + 1)
        self.assertIn(b"\r\nX-Peer: " + peer.encode() + b"\r\n\r\n", msgs[-1]["data"])

    def test_outside_relay_networks_denied(self):
        proxy = self.proxy("--relay-networks", "127.0.0.1/32")
        self.denied(proxy, source="127.0.0.2")

    def test_inside_relay_networks_relays(self):
        proxy = self.proxy("--relay-networks", "127.0.0.1/32")
        self.relays(proxy)
        # And the other address is still refused by the same relay.
        with h.Client(proxy.port, source="127.0.0.2") as c:
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 554)

    def test_default_networks_allow_loopback(self):
        proxy = self.proxy()
        self.relays(proxy)
        self.relays(proxy, source="127.0.0.2", peer="127.0.0.2")

    def test_list_of_networks(self):
        proxy = self.proxy("--relay-networks", "10.0.0.0/8,127.0.0.2/32,192.168.0.0/16")
        self.relays(proxy, source="127.0.0.2", peer="127.0.0.2")
        with h.Client(proxy.port) as c:  # 127.0.0.1 is not in the list
            self.assertEqual(c.cmd("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<b@example.com>")[0], 554)

    def test_no_loopback_in_networks(self):
        proxy = self.proxy("--relay-networks", "10.0.0.0/8,192.168.0.0/16,fd00::/8")
        self.denied(proxy)

    def test_ipv6_default_allows_ipv6_loopback(self):
        proxy = self.proxy(listen="[::1]:0")
        self.relays(proxy, host="::1", peer="::1")
        # RFC 5321 4.1.3: an IPv6 address literal in the trace field.
        data = self.rec.messages()[-1]["data"]
        self.assertTrue(data.startswith(b"Received: from client.example ([IPv6:::1])"), data[:120])

    def test_ipv6_client_outside_ipv4_networks(self):
        proxy = self.proxy("--relay-networks", "127.0.0.0/8", listen="[::1]:0")
        self.denied(proxy, host="::1")

    def test_invalid_relay_networks_is_a_usage_error(self):
        for bad in ("300.0.0.0/8", "127.0.0.1/33", "::1/129", "localhost", "127.0.0.1/8,"):
            r = subprocess.run([h.smtpd_bin(), "-n", "-c", "PureProxy", "--relay-networks", bad,
                                "127.0.0.1:0", "127.0.0.1:%d" % self.rec.port],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 64, "%s: exit %d, stderr %r"
                             % (bad, r.returncode, r.stderr))
            self.assertIn(b"relay-networks", r.stderr)


if __name__ == "__main__":
    h.main()
