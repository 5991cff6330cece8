"""tls_reload: SIGHUP reloads --tls-cert/--tls-key; bad files at start-up.

  * Renewal: smtpd starts with pair A; a handshake (on --smtps and after
    STARTTLS) gets A's certificate (the SHA-256 of its DER form, checked
    against the file). A new pair is copied over the same two paths, as
    certbot's renewals do, then SIGHUP: "SIGHUP: certificate FILE reloaded"
    is logged once, the next handshakes get the new certificate, a session
    in TLS from before the reload still delivers a message after it, and a
    plaintext one from before that starts TLS after it gets the new one.
    With --workers 2 each process reloads, and every worker serves the new one.
  * A broken renewal: a garbage certificate, a garbage key, a key that does
    not match the certificate, a missing certificate file. Each SIGHUP logs
    one "SIGHUP: keeping the certificate in use: ..." line at error level
    naming the file, and the next handshakes still get the last good
    certificate. A good pair afterwards is loaded again.
  * Start-up: a garbage certificate or key, a missing file, a directory
    instead of a file, a key that does not match the certificate: exit
    status 78 (EX_CONFIG), one line on standard error naming the file, and
    no listener. --tls-cert without --tls-key (and the other way round),
    --smtps or --require-tls without a certificate: exit status 64.
  * SIGHUP without --tls-cert: "nothing to reload", and smtpd goes on serving.
"""

import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
import tlslib  # noqa: E402
from smtpdtest import SLOW  # noqa: E402

EX_USAGE = 64
EX_CONFIG = 78


def file_fingerprint(cert_path):
    """SHA-256 of the DER form of the (first) certificate in a PEM file."""
    with open(cert_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def run_smtpd(*args):
    """smtpd ARGS to its end: (exit status, stderr as text)."""
    r = subprocess.run(smtpdtest.smtpd_argv() + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20 * SLOW)
    return r.returncode, r.stderr.decode("utf-8", "replace")


class ReloadTestCase(smtpdtest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()
        cls.renewed = cls.certs.new_pair("renewed")
        cls.again = cls.certs.new_pair("again")

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def setUp(self):
        # The files smtpd is given: copies, overwritten in place by the tests.
        live = tempfile.mkdtemp(prefix="smtpd-live-")
        self.addCleanup(shutil.rmtree, live, True)
        self.cert = os.path.join(live, "cert.pem")
        self.key = os.path.join(live, "key.pem")
        self.install(self.certs.cert, self.certs.key)

    def install(self, cert, key):
        """Copy a pair over the live paths (the same files, new contents)."""
        shutil.copyfile(cert, self.cert)
        shutil.copyfile(key, self.key)


class ReloadTest(ReloadTestCase):

    def start_tls(self):
        srv = self.start("--tls-cert", self.cert, "--tls-key", self.key,
                         "--smtps", "127.0.0.1:0")
        srv.smtps = srv.smtps_port()
        return srv

    def open_plain(self, srv):
        c = self.raw(srv.port, timeout=10 * SLOW)
        self.assertEqual(c.reply()[0], 220)
        return c

    def handshake(self, c):
        """Client @c goes on in TLS, checking the server against our CA."""
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")

    def starttls(self, c):
        self.assertEqual(c.command("EHLO client.example")[0], 250)
        self.assertEqual(c.command("STARTTLS")[0], 220)
        self.handshake(c)

    def open_tls(self, srv, how):
        """A client in TLS: its greeting read (smtps) or STARTTLS done."""
        if how == "starttls":
            c = self.open_plain(srv)
            self.starttls(c)
        else:
            c = self.raw(srv.smtps, timeout=10 * SLOW)
            self.handshake(c)
            self.assertEqual(c.reply()[0], 220)
        return c

    def served_fingerprint(self, srv, how="smtps"):
        """SHA-256 of the certificate a new handshake gets."""
        c = self.open_tls(srv, how)
        der = c.sock.getpeercert(binary_form=True)
        self.assertEqual(c.command("QUIT")[0], 221)
        c.close()
        return hashlib.sha256(der).hexdigest()

    def assert_served(self, srv, cert_path):
        for how in ("smtps", "starttls"):
            self.assertEqual(self.served_fingerprint(srv, how), file_fingerprint(cert_path),
                             "the %s handshake got another certificate than %s"
                             % (how, os.path.basename(cert_path)))

    def sighup(self, srv, pattern, count):
        """SIGHUP, then wait for the @count-th line matching @pattern."""
        srv.signal(signal.SIGHUP)
        ok = srv.err.wait_for(lambda b: len(re.findall(pattern, b)) >= count, 10 * SLOW)
        self.assertTrue(ok, "no line %r after SIGHUP number %d; stderr:\n%s"
                        % (pattern, count, srv.stderr_text()))
        return re.findall(pattern, srv.stderr())[count - 1]

    def reloaded(self, srv, count):
        self.sighup(srv, rb"info: SIGHUP: certificate %s reloaded\n"
                    % re.escape(self.cert.encode()), count)

    def refused(self, srv, count):
        """SIGHUP with broken files: the reason on the error line."""
        return self.sighup(srv, rb"error: SIGHUP: keeping the certificate in use: (.*)\n", count)

    def send_message(self, c, tag):
        for line, code in (("EHLO client.example", 250), ("MAIL FROM:<a@example.com>", 250),
                           ("RCPT TO:<b@example.net>", 250), ("DATA", 354),
                           ("Subject: %s\r\n\r\nbody\r\n." % tag, 250), ("QUIT", 221)):
            self.assertEqual(c.command(line)[0], code, line)

    def test_renewed_certificate(self):
        srv = self.start_tls()
        self.assert_served(srv, self.certs.cert)
        before = self.open_tls(srv, "smtps")
        first = hashlib.sha256(before.sock.getpeercert(binary_form=True)).hexdigest()
        plain = self.open_plain(srv)  # its STARTTLS comes after the reload

        self.install(*self.renewed)
        self.reloaded(srv, 1)
        self.assert_served(srv, self.renewed[0])
        self.assertNotEqual(file_fingerprint(self.renewed[0]), first)
        self.starttls(plain)
        self.assertEqual(hashlib.sha256(plain.sock.getpeercert(binary_form=True)).hexdigest(),
                         file_fingerprint(self.renewed[0]))

        # The session from before the reload goes on, with its certificate.
        self.assertEqual(hashlib.sha256(before.sock.getpeercert(binary_form=True)).hexdigest(),
                         first)
        self.send_message(before, "opened-before-reload")
        self.assertTrue(srv.out.wait_for(lambda b: b"Subject: opened-before-reload" in b,
                                         5 * SLOW), "the message was not delivered")
        self.assertEqual(srv.stderr().count(b"SIGHUP: certificate"), 1)
        self.assertTrue(srv.alive())

    def test_workers_reload_too(self):
        """--workers 2: the parent passes SIGHUP on, every worker reloads
        (one line per process), and every handshake after it, whichever
        worker takes it, gets the new certificate."""
        srv = self.start("--workers", "2", "--tls-cert", self.cert, "--tls-key", self.key,
                         "--smtps", "127.0.0.1:0")
        srv.smtps = srv.smtps_port()
        self.install(*self.renewed)
        pattern = rb"smtpd\[(\d+)\] info: SIGHUP: certificate [^\n]* reloaded\n"
        # The second worker may not handle signals yet right after the start
        # (it ignores them until it does): SIGHUP again until both reloaded.
        ok = None
        for _ in range(10):
            srv.signal(signal.SIGHUP)
            ok = srv.err.wait_for(lambda b: len(set(re.findall(pattern, b))) >= 2, 1 * SLOW)
            if ok:
                break
        self.assertTrue(ok, "not every worker reloaded:\n%s" % srv.stderr_text())
        self.assertTrue(srv.alive())
        for _ in range(6):
            self.assert_served(srv, self.renewed[0])

    def test_broken_renewal_keeps_the_last_good_pair(self):
        srv = self.start_tls()
        self.install(*self.renewed)
        self.reloaded(srv, 1)
        good_cert, good_key = self.renewed
        broken = [
            ("garbage certificate", self.certs.garbage, good_key, [self.cert]),
            ("garbage key", good_cert, self.certs.garbage, [self.key]),
            # OpenSSL: "key values mismatch" (naming the key file).
            ("key of another certificate", good_cert, self.certs.key, [self.key, "match"]),
            ("no certificate file", None, good_key, [self.cert, "No such file or directory"]),
        ]
        for n, (name, cert, key, words) in enumerate(broken, 1):
            with self.subTest(broken=name):
                if cert:
                    self.install(cert, key)
                else:
                    shutil.copyfile(key, self.key)
                    os.remove(self.cert)
                why = self.refused(srv, n).decode()
                for w in words:
                    self.assertIn(w, why)
                self.assertTrue(srv.alive(), srv.stderr_text())
                self.assert_served(srv, good_cert)
        self.assertEqual(srv.stderr().count(b"keeping the certificate in use"), len(broken))
        # A good pair again: loaded.
        self.install(*self.again)
        self.reloaded(srv, 2)
        self.assert_served(srv, self.again[0])

    def test_sighup_without_tls(self):
        srv = self.start()
        for n in (1, 2):
            self.sighup(srv, rb"info: SIGHUP: no --tls-cert, nothing to reload\n", n)
        self.assertTrue(srv.alive())
        c = self.raw(srv.port, timeout=10 * SLOW)
        self.assertEqual(c.reply()[0], 220)
        self.send_message(c, "after-sighup")
        self.assertTrue(srv.out.wait_for(lambda b: b"Subject: after-sighup" in b, 5 * SLOW))


class StartupTest(ReloadTestCase):

    def assert_exit(self, status, args, *words):
        """smtpd ARGS exits with @status and one line "smtpd: ..." naming @words."""
        rc, err = run_smtpd("-n", "-c", "DebuggingServer", *args)
        self.assertEqual(rc, status, "smtpd %s: stderr %r" % (" ".join(args), err))
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("smtpd: "), err)
        for w in words:
            self.assertIn(w, lines[0])
        self.assertNotIn("listening", err)

    def test_bad_files_exit_78(self):
        missing = os.path.join(self.certs.dir, "no-such-file.pem")
        cases = [
            ("garbage certificate", self.certs.garbage, self.key, [self.certs.garbage]),
            ("garbage key", self.cert, self.certs.garbage, [self.certs.garbage]),
            ("missing certificate", missing, self.key, [missing, "No such file or directory"]),
            ("missing key", self.cert, missing, [missing, "No such file or directory"]),
            ("directory as certificate", self.certs.dir, self.key, [self.certs.dir]),
            ("directory as key", self.cert, self.certs.dir, [self.certs.dir]),
            ("key of another certificate", self.cert, self.renewed[1], [self.renewed[1], "match"]),
        ]
        for name, cert, key, words in cases:
            with self.subTest(case=name):
                self.assert_exit(EX_CONFIG, ["--tls-cert", cert, "--tls-key", key,
                                             "--smtps", "127.0.0.1:0",
                                             "127.0.0.1:0"], *words)

    def test_flag_combinations_exit_64(self):
        smtps = "127.0.0.1:0"
        cases = [
            (["--tls-cert", self.cert], "--tls-key"),
            (["--tls-key", self.key], "--tls-cert"),
            (["--smtps", smtps], "--smtps"),
            (["--require-tls"], "--require-tls"),
            (["--tls-cert", self.cert, "--tls-key", self.key, "--smtps", "nonsense"], "--smtps"),
            (["--tls-cert", self.cert, "--tls-key", self.key, "--tls-handshake-timeout", "soon"],
             "--tls-handshake-timeout"),
        ]
        for args, named in cases:
            with self.subTest(args=" ".join(args)):
                self.assert_exit(EX_USAGE, args + ["127.0.0.1:0"], named)


if __name__ == "__main__":
    smtpdtest.main()
