"""hard_conncap: the connection caps hold and the server stays responsive.

  * --max-connections 5: the 6th client (and a burst of 30 more) gets
    "421 4.3.2" and is closed, the 5 admitted clients still get answers, and
    once one of them leaves a well-behaved client gets its mail through.
  * --max-connections-per-ip 2: the third connection from 127.0.0.1 gets
    "421 4.3.2" while clients bound to 127.0.0.2 and 127.0.0.3 still connect
    and deliver; a slot freed from 127.0.0.1 is taken again.
"""

import socket
import time

from hardlib import SLOW, HardTestCase, main, send_mail_smtplib


def refused_with_421(port, source=None):
    """Connect, read the first line; return it (the server must close)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                 source_address=(source, 0) if source else None)
    try:
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        first = buf.split(b"\r\n")[0]
        # Nothing more, then EOF.
        s.settimeout(5)
        rest = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
        except ConnectionResetError:
            pass
        return first, rest
    finally:
        s.close()


def send_with_retry(port, token, seconds=5, source=None):
    """smtplib delivery, retried while the server still counts a client
    that has just left (bounded)."""
    import smtplib
    deadline = time.monotonic() + seconds
    while True:
        try:
            return send_mail_smtplib(port, token, timeout=10, source=source)
        except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected) as e:
            if time.monotonic() > deadline:
                raise AssertionError("no delivery within %ss: %r" % (seconds, e))
            time.sleep(0.1)


class ConnCapTest(HardTestCase):

    def test_max_connections(self):
        srv = self.start("--max-connections", "5")
        clients = []
        for i in range(5):
            c = self.raw(srv.port)
            self.assertEqual(c.reply()[0], 220, "client %d not admitted" % (i + 1))
            clients.append(c)
        first, rest = refused_with_421(srv.port)
        self.assertTrue(first.startswith(b"421 4.3.2"), first)
        self.assertEqual(rest, b"")
        # A burst of excess clients: all refused the same way, none hangs.
        for i in range(30):
            first, _ = refused_with_421(srv.port)
            self.assertTrue(first.startswith(b"421 4.3.2"), (i, first))
        # The admitted ones are still served, promptly.
        for i, c in enumerate(clients):
            t = time.monotonic()
            self.assertEqual(c.command("EHLO c%d.example" % i)[0], 250)
            self.assertEqual(c.command("NOOP")[0], 250)
            self.assertLess(time.monotonic() - t, 1.0 * SLOW)
        # One leaves (QUIT), another is reset: two slots free up.
        self.assertEqual(clients[0].command("QUIT")[0], 221)
        self.assertTrue(clients[0].closed_by_peer(3))
        send_with_retry(srv.port, "after-quit")
        clients[1].sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        clients[1].close()
        send_with_retry(srv.port, "after-reset")
        self.assertEqual(srv.wait_messages(2, 10), 2)
        # Still capped at 5: 3 left + 2 new ones fill it again.
        more = [self.raw(srv.port) for _ in range(2)]
        for c in more:
            self.assertEqual(c.reply()[0], 220)
        first, _ = refused_with_421(srv.port)
        self.assertTrue(first.startswith(b"421 4.3.2"), first)
        self.assertTrue(srv.alive())
        self.assertIn(b"connection refused", srv.stderr())

    def test_max_connections_per_ip(self):
        srv = self.start("--max-connections-per-ip", "2")
        a = [self.raw(srv.port) for _ in range(2)]
        for c in a:
            self.assertEqual(c.reply()[0], 220)
        first, rest = refused_with_421(srv.port)
        self.assertTrue(first.startswith(b"421 4.3.2"), first)
        # Other addresses are not affected.
        b = self.raw(srv.port, source="127.0.0.2")
        self.assertEqual(b.reply()[0], 220)
        self.assertEqual(b.command("EHLO two.example")[0], 250)
        send_mail_smtplib(srv.port, "from-127.0.0.3", source="127.0.0.3")
        c2 = self.raw(srv.port, source="127.0.0.2")
        self.assertEqual(c2.reply()[0], 220)
        first, _ = refused_with_421(srv.port, source="127.0.0.2")
        self.assertTrue(first.startswith(b"421 4.3.2"), first)
        # The two from 127.0.0.1 are still served; when one leaves, a new
        # client from 127.0.0.1 gets in.
        for c in a:
            self.assertEqual(c.command("NOOP")[0], 250)
        self.assertEqual(a[0].command("QUIT")[0], 221)
        self.assertTrue(a[0].closed_by_peer(3))
        send_with_retry(srv.port, "from-127.0.0.1")
        self.assertEqual(srv.wait_messages(2, 10), 2)
        out = srv.stdout()
        self.assertIn(b"X-Peer: 127.0.0.3", out)
        self.assertIn(b"X-Peer: 127.0.0.1", out)


if __name__ == "__main__":
    main()
