"""python_cli: `python -m smtpd`, the module's command line.

  * -V/--version prints smtpd.__version__; -h/--help prints the usage and
    exits 0; a bad option or size, an unknown class: a non-zero exit.
  * -c DebuggingServer prints each message on standard output between the
    MESSAGE FOLLOWS / END MESSAGE lines, X-Peer, X-MailFrom and X-RcptTo
    at the end of the header section.
  * -c package.module.Class loads a class of the user's (a module in a
    temporary folder on PYTHONPATH) with what -s, -u and --decode-data
    ask for; messages sent with swaks and curl reach its process_message;
    -s 1000 makes a bigger message get 552.
  * -d logs the dialogue on standard error; SIGINT stops it, status 0.
"""

import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import pyharness
from pyharness import BEGIN, END, QUICK, ModuleProcess, child_env, run_module, smtpd

CATCHER = textwrap.dedent('''\
    """A user's SMTPServer subclass, loaded by python -m smtpd -c pkg.catcher.Catcher."""
    import json
    import os
    import threading

    import smtpd

    _lock = threading.Lock()


    def _record(obj):
        line = json.dumps(obj) + "\\n"
        with _lock:
            with open(os.environ["CATCHER_OUT"], "a") as f:
                f.write(line)


    class Catcher(smtpd.SMTPServer):
        def __init__(self, localaddr, remoteaddr, data_size_limit=smtpd.DATA_SIZE_DEFAULT,
                     map=None, enable_SMTPUTF8=False, decode_data=False):
            _record({"event": "init", "localaddr": list(localaddr),
                     "remoteaddr": list(remoteaddr) if remoteaddr else None,
                     "data_size_limit": data_size_limit,
                     "enable_SMTPUTF8": enable_SMTPUTF8, "decode_data": decode_data})
            super().__init__(localaddr, remoteaddr, data_size_limit, map,
                             enable_SMTPUTF8=enable_SMTPUTF8, decode_data=decode_data)

        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            _record({"event": "message", "peer": list(peer), "mailfrom": mailfrom,
                     "rcpttos": rcpttos, "type": type(data).__name__,
                     "data": data if isinstance(data, str) else data.decode("latin-1"),
                     "kwargs": kwargs})
            return None
    ''')


class CliTestCase(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="pysmtpd-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def start(self, *options, extra=(), **env):
        p = ModuleProcess(*options, extra=extra, env=self.env(**env), cwd=self.tmp)
        self.addCleanup(p.close)
        return p

    def env(self, **extra):
        return child_env(**extra)

    def smtp(self, port):
        s = smtplib.SMTP("127.0.0.1", port, timeout=QUICK)
        self.addCleanup(pyharness.quiet_close, s)
        return s

    def run_tool(self, argv):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=QUICK)
        return r.returncode, r.stdout.decode("utf-8", "replace")


class OptionsTest(CliTestCase):

    def test_version(self):
        for opt in ("-V", "--version"):
            r = run_module(opt, env=self.env())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.decode().strip(), smtpd.__version__)

    def test_help(self):
        for opt in ("-h", "--help"):
            r = run_module(opt, env=self.env())
            self.assertEqual(r.returncode, 0, r.stderr)
            text = (r.stdout + r.stderr).decode()
            self.assertRegex(text, r"(?i)usage")
            for word in ("--nosetuid", "--class", "--size", "--smtputf8", "--debug",
                         "--decode-data"):
                self.assertIn(word, text, "%s: %s" % (opt, text))

    def test_bad_command_lines(self):
        for args in (["--no-such-option"], ["-s", "lots", "127.0.0.1:1"],
                     ["-n", "127.0.0.1:notaport"]):
            r = run_module(*args, env=self.env())
            self.assertNotEqual(r.returncode, 0, "%r exited 0: %r" % (args, r))
            self.assertTrue(r.stderr.strip(), "%r: nothing on stderr" % (args,))

    def test_unknown_class(self):
        r = run_module("-n", "-c", "no_such_module_here.Server",
                       "127.0.0.1:%d" % pyharness.free_port(), env=self.env())
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn(b"no_such_module_here", r.stderr)
        r = run_module("-n", "-c", "Nope", "127.0.0.1:%d" % pyharness.free_port(), env=self.env())
        self.assertEqual(r.returncode, 64, r)
        self.assertIn(b"no class Nope in smtpd", r.stderr)

    def test_abstract_base_class_refused(self):
        # As the smtpd program does (the seed started, then failed every DATA).
        r = run_module("-n", "-c", "SMTPServer", "127.0.0.1:%d" % pyharness.free_port(),
                       env=self.env())
        self.assertEqual(r.returncode, 64, r)
        self.assertIn(b"abstract base class", r.stderr)

    def test_build_of_another_python(self):
        # The C half of another version's folder: an ImportError that says so.
        here = "cp%d%d" % sys.version_info[:2]
        build = os.path.dirname(os.path.dirname(os.path.abspath(smtpd.__file__)))
        other = [d for d in os.listdir(build) if d.startswith("cp") and d != here]
        folder = os.path.join(self.tmp, "wrong")
        os.makedirs(os.path.join(folder, "smtpd"))
        for f in os.listdir(os.path.dirname(smtpd.__file__)):
            if f.endswith(".py"):
                shutil.copy(os.path.join(os.path.dirname(smtpd.__file__), f),
                            os.path.join(folder, "smtpd", f))
        if other:  # and the .so of another interpreter, when there is one
            src = os.path.join(build, other[0], "smtpd")
            for f in os.listdir(src):
                if f.endswith(".so"):
                    shutil.copy(os.path.join(src, f), os.path.join(folder, "smtpd", f))
        r = subprocess.run([sys.executable, "-c", "import smtpd"], capture_output=True,
                           env=dict(self.env(), PYTHONPATH=folder), timeout=QUICK)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn(("not built for this Python %d.%d" % sys.version_info[:2]).encode(),
                      r.stderr)


class DebuggingServerTest(CliTestCase):

    def test_prints_each_message(self):
        p = self.start("-n", "-c", "DebuggingServer")
        s = self.smtp(p.port)
        msg = b"From: sender@example.com\r\nSubject: dbg\r\n\r\nbody line\r\n.dot line\r\n"
        self.assertEqual(s.sendmail("sender@example.com", ["one@example.com", "two@example.net"],
                                    msg), {})
        out = p.wait_stdout(lambda b: b.count(END) >= 1)
        self.assertTrue(out)
        text = p.stdout()
        self.assertTrue(text.startswith(BEGIN), text)
        self.assertTrue(text.endswith(END), text)
        self.assertIn(b"From: sender@example.com\nSubject: dbg\nX-Peer: 127.0.0.1\n"
                      b"X-MailFrom: sender@example.com\n"
                      b"X-RcptTo: one@example.com, two@example.net\n\n"
                      b"body line\n.dot line\n" + END, text)
        # A bounce: the null reverse-path shown as <>.
        self.assertEqual(s.sendmail("", ["postmaster@example.com"],
                                    b"Subject: bounce\r\n\r\nreturned\r\n"), {})
        s.quit()
        p.wait_stdout(lambda b: b.count(END) >= 2)
        second = p.stdout()[len(text):]
        self.assertTrue(second.startswith(BEGIN), second)
        self.assertIn(b"Subject: bounce\nX-Peer: 127.0.0.1\nX-MailFrom: <>\n"
                      b"X-RcptTo: postmaster@example.com\n\nreturned\n" + END, second)


class UserClassTest(CliTestCase):
    """-c pkg.catcher.Catcher: a package in a temporary folder."""

    def setUp(self):
        super().setUp()
        self.lib = os.path.join(self.tmp, "lib")
        pkg = os.path.join(self.lib, "pkg")
        os.makedirs(pkg)
        with open(os.path.join(pkg, "__init__.py"), "w"):
            pass
        with open(os.path.join(pkg, "catcher.py"), "w") as f:
            f.write(CATCHER)
        self.out = os.path.join(self.tmp, "caught.jsonl")

    def env(self, **extra):
        return child_env(extra_path=[self.lib], CATCHER_OUT=self.out, **extra)

    def records(self, event):
        try:
            with open(self.out) as f:
                lines = f.read().split("\n")[:-1]
        except FileNotFoundError:
            return []
        return [r for r in map(json.loads, lines) if r["event"] == event]

    def wait_messages(self, n):
        found = pyharness.wait_until(lambda: len(self.records("message")) >= n and
                                     self.records("message"), QUICK, 0.05)
        if not found:
            raise AssertionError("expected %d messages in %s, have %r"
                                 % (n, self.out, self.records("message")))
        time.sleep(0.1)
        found = self.records("message")
        self.assertEqual(len(found), n, found)
        return found

    def test_swaks_curl_and_size(self):
        p = self.start("-n", "-c", "pkg.catcher.Catcher", "-s", "1000")
        (init,) = self.records("init")
        self.assertEqual(init["localaddr"], ["127.0.0.1", p.port])
        self.assertEqual(init["data_size_limit"], 1000)
        self.assertFalse(init["enable_SMTPUTF8"])
        self.assertFalse(init["decode_data"])

        code, out = self.run_tool([pyharness.tool("swaks"), "--server", "127.0.0.1:%d" % p.port,
                                   "--to", "a@b", "--from", "c@d", "--body", "x"])
        self.assertEqual(code, 0, out)
        (m,) = self.wait_messages(1)
        self.assertEqual(m["mailfrom"], "c@d")
        self.assertEqual(m["rcpttos"], ["a@b"])
        self.assertEqual(m["peer"][0], "127.0.0.1")
        self.assertEqual(m["type"], "bytes")
        self.assertIn("\r\n\r\nx\r\n", m["data"])
        self.assertTrue(m["data"].endswith("\r\n"), m["data"])
        self.assertEqual(m["kwargs"]["rcpt_options"], [])

        upload = os.path.join(self.tmp, "upload.eml")
        content = (b"From: c@d\r\nTo: a@b\r\nSubject: curl\r\n\r\nsent by curl\r\n"
                   b".a line with a dot\r\nlast\r\n")
        with open(upload, "wb") as f:
            f.write(content)
        code, out = self.run_tool([pyharness.tool("curl"), "-s", "-S",
                                   "smtp://127.0.0.1:%d" % p.port, "--mail-from", "c@d",
                                   "--mail-rcpt", "a@b", "-T", upload])
        self.assertEqual(code, 0, out)
        m = self.wait_messages(2)[1]
        self.assertEqual((m["mailfrom"], m["rcpttos"]), ("c@d", ["a@b"]))
        self.assertEqual(m["data"].encode("latin-1"), content)

        # Over -s 1000: 552, and nothing delivered.
        code, out = self.run_tool([pyharness.tool("swaks"), "--server", "127.0.0.1:%d" % p.port,
                                   "--to", "a@b", "--from", "c@d", "--body", "y" * 2000])
        self.assertNotEqual(code, 0, out)
        self.assertRegex(out, r"<\*\* +552")
        s = self.smtp(p.port)
        s.ehlo("client.example.org")
        self.assertEqual(s.esmtp_features.get("size"), "1000")
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail("c@d", ["a@b"], b"Subject: big\r\n\r\n" + b"z" * 1500 + b"\r\n")
        self.assertEqual(cm.exception.smtp_code, 552)
        s.quit()
        time.sleep(0.2)
        self.assertEqual(len(self.records("message")), 2)

    def test_smtputf8_option(self):
        p = self.start("-n", "-u", "-c", "pkg.catcher.Catcher")
        (init,) = self.records("init")
        self.assertTrue(init["enable_SMTPUTF8"])
        s = self.smtp(p.port)
        s.ehlo("client.example.org")
        self.assertTrue(s.has_extn("smtputf8"))
        sender = "j\u00f6rg@ex\u00e4mple.com"
        self.assertEqual(s.sendmail(sender, ["\u00e5sa@example.com"],
                                    "Subject: \u2603\r\n\r\nhi\r\n".encode("utf-8"),
                                    mail_options=["SMTPUTF8"]), {})
        (m,) = self.wait_messages(1)
        self.assertEqual(m["mailfrom"], sender)
        self.assertEqual(m["rcpttos"], ["\u00e5sa@example.com"])
        self.assertIn("SMTPUTF8", m["kwargs"]["mail_options"])

    def test_decode_data_option(self):
        p = self.start("-n", "--decode-data", "-c", "pkg.catcher.Catcher")
        (init,) = self.records("init")
        self.assertTrue(init["decode_data"])
        s = self.smtp(p.port)
        self.assertEqual(s.sendmail("c@d", ["a@b"], "Subject: t\r\n\r\nGr\u00fc\u00dfe\r\n"
                                    .encode("utf-8")), {})
        (m,) = self.wait_messages(1)
        self.assertEqual(m["type"], "str")
        self.assertEqual(m["data"], "Subject: t\r\n\r\nGr\u00fc\u00dfe\r\n")
        self.assertEqual(m["kwargs"], {})

    def test_debug_option(self):
        p = self.start("-n", "-d", "-c", "pkg.catcher.Catcher")
        s = self.smtp(p.port)
        self.assertEqual(s.sendmail("dbg@example.com", ["a@b"], b"Subject: d\r\n\r\nx\r\n"), {})
        s.quit()
        self.wait_messages(1)
        self.assertTrue(p.err.wait_for(
            lambda b: re.search(rb"(?i)MAIL FROM: ?<dbg@example\.com>", b), QUICK),
            "no dialogue on stderr with -d: %s" % p.stderr_text())

    def test_sigint_stops_it(self):
        p = self.start("-n", "-c", "pkg.catcher.Catcher")
        s = self.smtp(p.port)
        self.assertEqual(s.sendmail("c@d", ["a@b"], b"Subject: i\r\n\r\nx\r\n"), {})
        s.quit()
        self.wait_messages(1)
        p.proc.send_signal(signal.SIGINT)
        try:
            rc = p.proc.wait(5 * pyharness.SLOW)
        except subprocess.TimeoutExpired:
            self.fail("python -m smtpd still runs 5 s after SIGINT; stderr:\n%s"
                      % p.stderr_text())
        self.assertEqual(rc, 0, p.stderr_text())
        self.assertTrue(pyharness.smtpdtest.port_closed(p.port))

    def test_sigterm_stops_it_with_status_0(self):
        p = self.start("-n", "-c", "DebuggingServer")
        p.proc.send_signal(signal.SIGTERM)
        try:
            rc = p.proc.wait(5 * pyharness.SLOW)
        except subprocess.TimeoutExpired:
            self.fail("python -m smtpd still runs 5 s after SIGTERM")
        self.assertEqual(rc, 0, p.stderr_text())


if __name__ == "__main__":
    pyharness.main()
