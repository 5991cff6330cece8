"""--proxy-protocol: a PROXY header (v1 or v2) before every connection,
written here by hand on raw sockets (test_haproxy.py has HAProxy send it).

The session's peer is the header's client: in X-Peer, in the log, in the
relay decision (--relay-networks) and in --max-connections-per-ip. Bad
headers, none at all, a header that never ends, and a balancer outside
--proxy-networks: each connection is closed without a byte and with one log
line, and the sessions around it go on.
"""

import socket
import ssl
import struct
import subprocess
import time
import unittest

import proxy_harness as h

V2_SIG = b"\r\n\r\n\0\r\nQUIT\n"


def v1(src, dst="127.0.0.1", sport=40000, dport=25, proto=None):
    proto = proto or ("TCP6" if ":" in src else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src=None, dst="127.0.0.1", sport=40000, dport=25, command=1, tlvs=b""):
    """A v2 header: PROXY for src (TCP over IPv4 or IPv6), LOCAL when
    command is 0."""
    if src is None:
        return V2_SIG + bytes([0x20 | command, 0]) + struct.pack("!H", len(tlvs)) + tlvs
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    addrs = (socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
             + struct.pack("!HH", sport, dport))
    body = addrs + tlvs
    return (V2_SIG + bytes([0x20 | command, 0x21 if fam == socket.AF_INET6 else 0x11])
            + struct.pack("!H", len(body)) + body)


class ProxyProtocol(h.DialogueTestCase):

    def server(self, *options, cls="DebuggingServer", **kw):
        return self.start("--proxy-protocol", *options, cls=cls, **kw)

    def session(self, srv, header, source=None):
        """A raw client that sent header and read the 220."""
        c = self.raw(srv.port, source=source)
        c.send(header)
        code, text = c.reply(timeout=5 * h.SLOW)
        self.assertEqual(code, 220, text)
        return c

    def send_message(self, c, subject, rcpt="bob@example.com"):
        self.assertEqual(c.command("EHLO client.example")[0], 250)
        return self.transaction(c, subject, rcpt)

    def assert_refused(self, srv, data, log, source=None, wait=5 * h.SLOW):
        """A connection that sends data is closed without a reply, with a
        log line matching log (bytes regex)."""
        c = self.raw(srv.port, source=source)
        if data:
            c.send(data)
        self.assertTrue(c.closed_by_peer(wait), "not closed after %r" % (data,))
        self.assertEqual(c.buf, b"", "bytes sent before the PROXY header: %r" % c.buf)
        self.assertIsNotNone(srv.wait_log(log), srv.stderr_text())

    # ---- the client's address becomes the session's ----

    def test_v1_tcp4(self):
        srv = self.server()
        c = self.session(srv, v1("192.0.2.7", sport=4444))
        self.assertEqual(self.send_message(c, "v1-tcp4")[0], 250)
        self.assertIn(b"X-Peer: 192.0.2.7\n", self.printed(srv, "v1-tcp4"))
        # The connection's log line names the client and the balancer.
        self.assertIsNotNone(srv.wait_log(
            rb"connect from 192\.0\.2\.7:4444 via proxy 127\.0\.0\.1:\d+"), srv.stderr_text())

    def test_v1_tcp6(self):
        srv = self.server()
        c = self.session(srv, v1("2001:db8::7", dst="2001:db8::1"))
        self.assertEqual(self.send_message(c, "v1-tcp6")[0], 250)
        self.assertIn(b"X-Peer: 2001:db8::7\n", self.printed(srv, "v1-tcp6"))

    def test_v2_tcp4_with_tlvs(self):
        srv = self.server()
        # ALPN "smtp", authority, a NOOP TLV: skipped.
        tlvs = b"\x01\x00\x04smtp" + b"\x02\x00\x0bexample.org" + b"\x04\x00\x03abc"
        c = self.session(srv, v2("198.51.100.20", sport=5555, tlvs=tlvs))
        self.assertEqual(self.send_message(c, "v2-tcp4")[0], 250)
        self.assertIn(b"X-Peer: 198.51.100.20\n", self.printed(srv, "v2-tcp4"))

    def test_v2_tcp6(self):
        srv = self.server()
        c = self.session(srv, v2("2001:db8::99", dst="2001:db8::1"))
        self.assertEqual(self.send_message(c, "v2-tcp6")[0], 250)
        self.assertIn(b"X-Peer: 2001:db8::99\n", self.printed(srv, "v2-tcp6"))

    def test_v2_local_and_v1_unknown_keep_the_balancers_address(self):
        srv = self.server()
        c = self.session(srv, v2(None, command=0))
        self.assertEqual(self.send_message(c, "v2-local")[0], 250)
        self.assertIn(b"X-Peer: 127.0.0.1\n", self.printed(srv, "v2-local"))
        c = self.session(srv, b"PROXY UNKNOWN\r\n")
        self.assertEqual(self.send_message(c, "v1-unknown")[0], 250)
        self.assertIn(b"X-Peer: 127.0.0.1\n", self.printed(srv, "v1-unknown"))

    def test_header_and_commands_in_one_write(self):
        srv = self.server()
        c = self.raw(srv.port)
        c.send(v2("192.0.2.8") + b"EHLO client.example\r\nNOOP\r\n")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 250)

    def test_header_a_byte_at_a_time(self):
        srv = self.server()
        c = self.raw(srv.port, nodelay=True)
        for b in v1("192.0.2.9"):
            c.send(bytes([b]))
            time.sleep(0.005)
        self.assertEqual(c.reply(timeout=5 * h.SLOW)[0], 220)
        self.assertEqual(self.send_message(c, "bytewise")[0], 250)
        self.assertIn(b"X-Peer: 192.0.2.9\n", self.printed(srv, "bytewise"))

    def test_implicit_tls_after_the_header(self):
        tls = h.TlsFiles(self)
        srv = self.server("--tls-cert", tls.cert, "--tls-key", tls.key, "--smtps", "127.0.0.1:0")
        port = srv.smtps_port()
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(v2("192.0.2.44"))
        ctx = ssl.create_default_context(cafile=tls.ca)
        with ctx.wrap_socket(sock, server_hostname="localhost") as s:
            f = s.makefile("rb")
            self.assertTrue(f.readline().startswith(b"220 "))
            s.sendall(b"QUIT\r\n")
            self.assertTrue(f.readline().startswith(b"221 "))
        self.assertIsNotNone(srv.wait_log(
            rb"connect from 192\.0\.2\.44:40000 via proxy 127\.0\.0\.1:\d+ \(implicit TLS\)"),
            srv.stderr_text())

    # ---- bad headers: closed, one log line, the others unaffected ----

    def test_bad_headers_are_closed_and_others_go_on(self):
        srv = self.server()
        other = self.session(srv, v1("192.0.2.50"))
        self.assertEqual(other.command("EHLO client.example")[0], 250)
        bad = [
            ("no header", b"EHLO client.example\r\n"),
            ("v1 bad address", v1("192.0.2.256")),
            ("v1 name for address", b"PROXY TCP4 localhost 127.0.0.1 1 2\r\n"),
            ("v1 v6 address as TCP4", b"PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n"),
            ("v1 bad port", b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 25\r\n"),
            ("v1 bare LF", b"PROXY TCP4 192.0.2.1 127.0.0.1 1 25\n"),
            ("v1 oversized", b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n"),
            ("v2 wrong signature", b"\r\n\r\n\0\r\nQUIX\n" + b"\x21\x11\x00\x0c" + b"\0" * 12),
            ("v2 wrong version", V2_SIG + b"\x11\x11\x00\x0c" + b"\0" * 12),
            ("v2 address block too short", V2_SIG + b"\x21\x11\x00\x08" + b"\0" * 8),
            ("v2 oversized length", V2_SIG + b"\x21\x11\xff\xff" + b"\0" * 100),
            ("binary junk", bytes(range(256))),
        ]
        for name, data in bad:
            with self.subTest(name):
                self.assert_refused(srv, data, rb"connection from 127\.0\.0\.1:\d+ closed: "
                                               rb"not a valid PROXY header")
        # One log line each.
        count = lambda: srv.stderr().count(b"closed: not a valid PROXY header")  # noqa: E731
        h.wait_until(lambda: count() >= len(bad), 5 * h.SLOW, 0.05)
        self.assertEqual(count(), len(bad), srv.stderr_text())
        # The session opened before is untouched, and new ones work.
        self.assertEqual(self.send_message(other, "after-bad")[0], 250)
        self.assertEqual(self.send_message(self.session(srv, v2("192.0.2.51")), "new")[0], 250)

    def test_truncated_header_times_out(self):
        srv = self.server("--proxy-timeout", "1")
        for name, data in (("v1", v1("192.0.2.1")[:20]), ("v2", v2("192.0.2.1")[:20]),
                           ("nothing", b"")):
            with self.subTest(name):
                t0 = time.monotonic()
                self.assert_refused(srv, data, rb"closed: no complete PROXY header in time")
                self.assertGreaterEqual(time.monotonic() - t0, 0.9)

    def test_closed_before_the_header(self):
        srv = self.server()
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"PROXY TCP4 ")
        s.close()
        self.assertIsNotNone(srv.wait_log(rb"closed: closed before its PROXY header"),
                             srv.stderr_text())

    def test_untrusted_balancer(self):
        srv = self.server("--proxy-networks", "127.0.0.2/32")
        self.assert_refused(srv, v1("192.0.2.1"),
                            rb"connection from 127\.0\.0\.1:\d+ closed: not in the networks "
                            rb"allowed to send a PROXY header")
        c = self.session(srv, v1("192.0.2.60"), source="127.0.0.2")
        self.assertEqual(self.send_message(c, "trusted")[0], 250)
        self.assertIn(b"X-Peer: 192.0.2.60\n", self.printed(srv, "trusted"))

    def test_networks_and_timeout_need_the_protocol(self):
        for opt in (["--proxy-networks", "127.0.0.1/32"], ["--proxy-timeout", "3"]):
            r = subprocess.run([h.smtpd_bin(), "-n", *opt, "127.0.0.1:0"], capture_output=True,
                               timeout=10)
            self.assertEqual(r.returncode, 64, r)
            self.assertIn(b"are for --proxy-protocol", r.stderr)
        r = subprocess.run([h.smtpd_bin(), "-n", "--proxy-protocol", "--proxy-networks",
                            "300.0.0.0/8", "127.0.0.1:0"], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 64, r)

    # ---- what the client's address decides ----

    def test_relay_decision_follows_the_client_address(self):
        rec = h.Recorder()
        self.addCleanup(rec.cleanup)
        srv = self.server("--relay-networks", "192.0.2.0/24", "--hostname", "relay.test",
                          cls="PureProxy", extra=["127.0.0.1:%d" % rec.port],
                          stdout=subprocess.DEVNULL)
        c = self.session(srv, v1("192.0.2.70"))
        self.assertEqual(self.send_message(c, "allowed")[0], 250)
        msgs = rec.wait_messages(1)
        self.assertEqual(len(msgs), 1)
        self.assertIn(b"\r\nX-Peer: 192.0.2.70\r\n", msgs[0]["data"])
        self.assertRegex(msgs[0]["data"], rb"Received: from client\.example \(\[192\.0\.2\.70\]\)")
        # The balancer itself (127.0.0.1) would be outside 192.0.2.0/24 too;
        # what counts is the header's address.
        c = self.session(srv, v2("198.51.100.70"))
        code, text = self.send_message(c, "denied")
        self.assertEqual(code, 554, text)
        time.sleep(0.2)
        self.assertEqual(len(rec.messages()), 1)

    def test_per_ip_cap_counts_the_client_address(self):
        srv = self.server("--max-connections-per-ip", "1")
        first = self.session(srv, v1("192.0.2.80"))
        self.assertEqual(first.command("NOOP")[0], 250)
        c = self.raw(srv.port)
        c.send(v1("192.0.2.80", sport=40001))
        self.assertEqual(c.reply(timeout=5 * h.SLOW)[0], 421)
        # Another client through the same balancer is let in.
        other = self.session(srv, v1("192.0.2.81"))
        self.assertEqual(other.command("NOOP")[0], 250)


if __name__ == "__main__":
    h.main()
