"""integ_cli: the smtpd command line: help, version, usage errors, binding."""

import re
import socket

from smtpd_harness import (EX_OSERR, EX_UNAVAILABLE, EX_USAGE, RawClient, SmtpdTestCase, main,
                           run_smtpd)


def run(args):
    r = run_smtpd(args)
    return r.returncode, r.stdout, r.stderr


class HelpVersionTest(SmtpdTestCase):

    def test_help(self):
        for opt in ("--help", "-h"):
            rc, out, err = run([opt])
            self.assertEqual(rc, 0, err)
            text = out.decode()
            self.assertTrue(text.startswith("Usage: smtpd "), text)
            for word in ("--nosetuid", "--class", "--size", "--smtputf8", "--debug",
                         "--max-connections", "--command-timeout"):
                self.assertIn(word, text)
            self.assertEqual(err, b"")

    def test_help_names_max_recipients_not_smtpserver(self):
        rc, out, err = run(["--help"])
        self.assertEqual(rc, 0, err)
        text = out.decode()
        self.assertRegex(text, r"\n +--max-recipients N +\S")
        self.assertRegex(text, r"--min-data-rate B .*\n.*\(default 500; 0: none\)")
        # The classes -c takes: SMTPServer (abstract, refused) is not one of them.
        classes = text[text.index("--class NAME"):text.index("\n  -s, --size")]
        for name in ("PureProxy", "MailmanProxy", "DebuggingServer", "Sink"):
            self.assertIn(name, classes)
        self.assertNotIn("SMTPServer", text)

    def test_version(self):
        for opt in ("-V", "--version"):
            rc, out, err = run([opt])
            self.assertEqual(rc, 0, err)
            self.assertRegex(out.decode(), r"^smtpd \d+\.\d+\.\d+\n$")
            self.assertEqual(err, b"")


class UsageErrorTest(SmtpdTestCase):
    """Each bad command line: exit status 64 (EX_USAGE), one clear line on
    standard error naming the problem, nothing on standard output, no server."""

    def assertUsageError(self, args, *words):
        rc, out, err = run(args)
        self.assertEqual(rc, EX_USAGE, "smtpd %s: exit %d, stderr %r" % (" ".join(args), rc, err))
        lines = err.decode("utf-8", "replace").splitlines()
        self.assertEqual(len(lines), 1, "smtpd %s: stderr %r" % (" ".join(args), err))
        self.assertTrue(lines[0].startswith("smtpd: "), lines)
        for w in words:
            self.assertIn(w, lines[0])
        self.assertEqual(out, b"")
        self.assertNotIn("listening", lines[0])

    def test_unknown_option(self):
        self.assertUsageError(["-n", "--no-such-option", "127.0.0.1:0"], "--no-such-option")
        self.assertUsageError(["-n", "-x", "127.0.0.1:0"], "-x")

    def test_bad_size(self):
        for bad in ("abc", "10MB", "-5", "", "99999999999999999999999"):
            with self.subTest(size=bad):
                self.assertUsageError(["-n", "-c", "DebuggingServer", "-s", bad, "127.0.0.1:0"],
                                      "size")
        self.assertUsageError(["-n", "-c", "DebuggingServer", "127.0.0.1:0", "-s"], "-s")

    def test_bad_numbers(self):
        for opt in ("--max-connections", "--command-timeout", "--data-timeout"):
            with self.subTest(opt=opt):
                self.assertUsageError(["-n", "-c", "DebuggingServer", opt, "soon", "127.0.0.1:0"],
                                      opt)

    def test_bad_bare_lf_policy(self):
        self.assertUsageError(["-n", "-c", "DebuggingServer", "--bare-lf", "strip",
                               "127.0.0.1:0"], "strip")

    def test_decode_data_with_smtputf8(self):
        self.assertUsageError(["-n", "-c", "DebuggingServer", "--decode-data", "-u",
                               "127.0.0.1:0"], "--decode-data")

    def test_abstract_class(self):
        self.assertUsageError(["-n", "-c", "SMTPServer", "127.0.0.1:0"], "SMTPServer")
        self.assertUsageError(["-n", "-c", "SMTPServer"], "SMTPServer", "abstract")

    def test_bad_max_recipients(self):
        for bad in ("0", "-1", "abc", "", "1.5", "4294967296"):
            with self.subTest(value=bad):
                self.assertUsageError(["-n", "-c", "DebuggingServer", "--max-recipients", bad,
                                       "127.0.0.1:0"], "--max-recipients", "'%s'" % bad)
        self.assertUsageError(["-n", "-c", "DebuggingServer", "127.0.0.1:0",
                               "--max-recipients"], "--max-recipients")

    def test_port_out_of_range(self):
        # The default class (PureProxy) and the default remote: only the
        # local address is wrong, and the message says how.
        self.assertUsageError(["-n", "localhost:99999"], "localhost:99999",
                              "port out of range 0-65535")
        self.assertUsageError(["-n", "-c", "DebuggingServer", "127.0.0.1:65536"],
                              "port out of range 0-65535")
        self.assertUsageError(["-n", "127.0.0.1:0", "smarthost.example:99999"],
                              "smarthost.example:99999", "port out of range 0-65535")

    def test_bad_relay_networks(self):
        for bad in ("10.0.0/33", "10.0.0.0/33", "::1/129", "nonsense", "10.0.0.0/8,", ""):
            with self.subTest(value=bad):
                self.assertUsageError(["-n", "--relay-networks", bad, "127.0.0.1:0"],
                                      "--relay-networks", "'%s'" % bad)

    def test_bad_mailman_lmtp(self):
        self.assertUsageError(["-n", "-c", "MailmanProxy", "--mailman-lmtp", "nonsense",
                               "127.0.0.1:0"], "--mailman-lmtp", "nonsense")
        # Checked whatever the class, as every option is.
        self.assertUsageError(["-n", "-c", "DebuggingServer", "--mailman-lmtp", "nonsense",
                               "127.0.0.1:0"], "--mailman-lmtp", "nonsense")
        self.assertUsageError(["-n", "-c", "MailmanProxy", "--mailman-lmtp", "127.0.0.1:99999",
                               "127.0.0.1:0"], "--mailman-lmtp", "port out of range 0-65535")

    def test_unknown_class(self):
        self.assertUsageError(["-n", "-c", "NoSuchServer", "127.0.0.1:0"], "NoSuchServer")

    def test_extra_arguments(self):
        self.assertUsageError(["-n", "-c", "DebuggingServer", "127.0.0.1:0", "localhost:25",
                               "surplus"], "argument")

    def test_bad_local_address(self):
        self.assertUsageError(["-n", "-c", "DebuggingServer", "no-port-here"], "no-port-here")
        self.assertUsageError(["-n", "-c", "DebuggingServer", "127.0.0.1:99999"], "99999")

    def test_bad_remote_address(self):
        # smtpd.py: usage(1, 'Bad remote spec: ...') for a remote without a port.
        self.assertUsageError(["-n", "-c", "DebuggingServer", "127.0.0.1:0", "no-port-here"],
                              "no-port-here")


class BindTest(SmtpdTestCase):

    def test_port_in_use(self):
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        rc, out, err = run(["-n", "-c", "DebuggingServer", "127.0.0.1:%d" % port])
        self.assertGreaterEqual(rc, 0, "killed by signal %d; stderr %r" % (-rc, err))
        self.assertIn(rc, (EX_UNAVAILABLE, EX_OSERR), err)
        lines = err.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("127.0.0.1:%d" % port, lines[0])
        self.assertRegex(lines[0], r"(?i)in use")
        self.assertEqual(out, b"")

    def test_address_in_use_message(self):
        # The message names the address as given and the error once
        # ("cannot listen on ...: Address already in use").
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            with self.subTest(host=host):
                rc, out, err = run(["-n", "-c", "DebuggingServer", "%s:%d" % (host, port)])
                self.assertEqual(rc, EX_UNAVAILABLE, err)
                self.assertEqual(err.decode(), "smtpd: cannot listen on %s:%d: "
                                 "Address already in use\n" % (host, port))
                self.assertEqual(err.count(b"Address already in use"), 1)
                self.assertEqual(out, b"")

    def test_localhost_binds_every_address(self):
        expected = sorted({ai[4][0] for ai in socket.getaddrinfo(
            "localhost", 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
            if ai[0] in (socket.AF_INET, socket.AF_INET6)})
        self.assertIn("127.0.0.1", expected)
        srv = self.start(listen="localhost:0")
        found = re.findall(rb"smtpd\[\d+\] info: listening on (\[[0-9a-f:]+\]|[0-9.]+):([0-9]+)\n",
                           srv.startup_log())
        socks = [(a.decode().strip("[]"), int(p)) for a, p in found if int(p) != 0]
        self.assertEqual(sorted(a for a, _ in socks), expected, srv.stderr_text())
        ports = {p for _, p in socks}
        self.assertEqual(len(ports), 1, "one port for every address: %r" % socks)
        for addr, port in socks:
            c = RawClient(port, host=addr)
            code, text = c.reply()
            self.assertEqual(code, 220, (addr, text))
            self.assertEqual(c.command("QUIT")[0], 221)
            c.close()
        self.assertEqual(srv.stop(), 0)

    def test_listening_lines_name_real_sockets(self):
        # Every "listening on" line is an address a client can connect to:
        # none names port 0 (what was asked for, not what was bound).
        srv = self.start(listen="127.0.0.1:0")
        lines = [l.decode() for l in srv.startup_log().splitlines() if b"listening on" in l]
        self.assertEqual(lines and [l.split("listening on ")[1] for l in lines],
                         ["127.0.0.1:%d" % srv.port], lines)


if __name__ == "__main__":
    main()
