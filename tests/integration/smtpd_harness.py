"""Shared helpers for the smtpd integration tests.

Each test_*.py file in this directory is one CTest test (integ_<topic>). It is
run as

    python3 -B test_<topic>.py --smtpd PATH/smtpd --counter PATH/counter.so \
        --xcommands PATH/xcommands.so --plugins DIR

(the options may also come from the environment as SMTPD_BIN,
SMTPD_COUNTER_SO, SMTPD_XCOMMANDS_SO and SMTPD_TEST_PLUGINS; DIR holds the
test-only plugins built from tests/plugins). The tests start the real
program on 127.0.0.1 with port 0, read the chosen port from the "listening
on" log line on standard error, talk to it with real clients and always stop
it again.

What every test directory shares (starting and stopping smtpd, the raw
client) is in tests/pylib/smtpdtest.py; here is what only these tests use:
DebuggingServer's printed messages and the clients' views of the data.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import BEGIN, END, RawClient, quiet_close, smtpd_bin  # noqa: E402,F401

# Every line the program logs: "2026-01-01T00:00:00 smtpd info: text".
LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d smtpd\[\d+\] (error|warning|info|debug): (.*)$")

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_NOPERM = 77

smtpdtest.paths["counter"] = os.environ.get("SMTPD_COUNTER_SO")
smtpdtest.paths["xcommands"] = os.environ.get("SMTPD_XCOMMANDS_SO")
smtpdtest.paths["plugins"] = os.environ.get("SMTPD_TEST_PLUGINS")


def counter_so():
    path = smtpdtest.paths["counter"]
    if not path or not os.path.isfile(path):
        raise AssertionError("counter.so not given or missing: %r "
                             "(pass --counter PATH or set SMTPD_COUNTER_SO)" % path)
    return os.path.abspath(path)


def xcommands_so():
    path = smtpdtest.paths["xcommands"]
    if not path or not os.path.isfile(path):
        raise AssertionError("xcommands.so not given or missing: %r "
                             "(pass --xcommands PATH or set SMTPD_XCOMMANDS_SO)" % path)
    return os.path.abspath(path)


def plugin_path(name):
    """The absolute path of test-only plugin NAME.so (tests/plugins)."""
    d = smtpdtest.paths["plugins"]
    path = os.path.join(d or "", name + ".so")
    if not d or not os.path.isfile(path):
        raise AssertionError("test plugin %s.so not found in %r "
                             "(pass --plugins DIR or set SMTPD_TEST_PLUGINS)" % (name, d))
    return os.path.abspath(path)


def main():
    """Take --smtpd/--counter/--xcommands/--plugins off the command line,
    then run unittest. The smtpd path is made absolute, so that a test may
    start it in another working directory."""
    args = smtpdtest.take_path_args(sys.argv[1:], ("smtpd", "counter", "xcommands", "plugins"))
    if smtpdtest.paths["smtpd"]:
        smtpdtest.paths["smtpd"] = os.path.abspath(smtpdtest.paths["smtpd"])
    sys.argv[1:] = args
    smtpdtest.main(())


def run_smtpd(args, timeout=30, **kw):
    """Run the program to completion, for command lines that must make it
    exit. One that goes on running (e.g. serving instead of refusing the
    command line) is killed and reported as a failure."""
    argv = smtpdtest.smtpd_argv() + list(args)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("%s did not exit within %ss (is it serving?); stderr: %r"
                             % (" ".join(argv), timeout, err))
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


class Smtpd(smtpdtest.Smtpd):
    """One running smtpd (see smtpdtest.Smtpd), with DebuggingServer's
    printed messages."""

    def startup_log(self):
        """Standard error once start-up is over: a client is served (so the
        event loop runs) and its "connect from" line, logged after every
        start-up line, has been read."""
        c = RawClient(self.port)
        try:
            code, text = c.reply()
            if code != 220:
                raise AssertionError("greeting %d %r" % (code, text))
            self.wait_stderr(rb"connect from 127\.0\.0\.1:%d\n" % c.sock.getsockname()[1])
        finally:
            c.close()
        return self.stderr()

    def messages(self):
        return parse_messages(self.out.data())

    def wait_messages(self, n, timeout=20):
        """Wait until DebuggingServer has printed n whole messages."""
        def enough(out):
            return out.count(END) >= n
        self.out.wait_for(enough, timeout)
        msgs = self.messages()
        if len(msgs) < n:
            raise AssertionError("expected %d messages on stdout, got %d; stderr:\n%s"
                                 % (n, len(msgs), self.stderr_text()))
        return msgs


def parse_messages(out):
    """Split DebuggingServer's output into dicts with 'mail_options',
    'rcpt_options' (lists of str, None when no such line) and 'data' (bytes,
    as printed)."""
    msgs = []
    pos = 0
    while True:
        b = out.find(BEGIN, pos)
        if b < 0:
            break
        b += len(BEGIN)
        e = out.find(END, b)
        if e < 0:
            break
        block = out[b:e]
        pos = e + len(END)
        m = {"mail_options": None, "rcpt_options": None}
        for key, prefix in (("mail_options", b"mail options: "), ("rcpt_options", b"rcpt options: ")):
            if block.startswith(prefix):
                nl = block.index(b"\n")
                m[key] = block[len(prefix):nl].decode("utf-8").split(" ")
                block = block[nl + 1:]
        # The envelope DebuggingServer shows after X-Peer is taken out into
        # 'mail_from' and 'rcpt_tos', so that 'data' is what debugging_view()
        # expects; a message printed without both lines fails here.
        env = ENVELOPE.search(block)
        if not env:
            raise AssertionError("no X-Peer/X-MailFrom/X-RcptTo lines in %r" % block[:300])
        m["mail_from"] = env.group(2).decode("utf-8")
        m["rcpt_tos"] = env.group(3).decode("utf-8").split(", ")
        m["data"] = block[:env.start()] + env.group(1) + block[env.end():]
        msgs.append(m)
    return msgs


# The envelope lines as DebuggingServer prints them.
ENVELOPE = re.compile(rb"(X-Peer: [0-9a-fA-F.:]+\n)X-MailFrom: ([^\n]*)\nX-RcptTo: ([^\n]*)\n")


def debugging_view(data, peer="127.0.0.1"):
    """What DebuggingServer prints for message data as the handler got it:
    "X-Peer: <peer>" inserted before the first empty line (a line, ended by
    LF, that is empty or only CR), at the end when there is none (after a
    CRLF of its own if the data does not end in LF), then every CRLF turned
    into LF; all other bytes unchanged."""
    xpeer = b"X-Peer: " + peer.encode() + b"\r\n"
    lines = re.findall(rb"[^\n]*\n|[^\n]+$", data)
    out = []
    inserted = False
    for line in lines:
        if not inserted and line in (b"\r\n", b"\n"):
            out.append(xpeer)
            inserted = True
        out.append(line)
    if not inserted:
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\r\n"
        out.append(xpeer)
    return b"".join(out).replace(b"\r\n", b"\n")


def normalized(data):
    """Data as the default --bare-lf normalize hands it on: every CR or LF
    that is not part of a CRLF made a CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def smtplib_wire(msg):
    """The data smtplib sends for a bytes message (before dot-stuffing):
    the bytes as they are (bare CR and LF included) plus a final CRLF when
    they do not end in one."""
    return msg if msg.endswith(b"\r\n") else msg + b"\r\n"


class SmtpdTestCase(smtpdtest.TestCase):
    """Base class: start servers and clients that are cleaned up always."""

    server_class = Smtpd

    def smtp(self, port, **kw):
        import smtplib
        s = smtplib.SMTP("127.0.0.1", port, timeout=kw.pop("timeout", 30), **kw)
        self.addCleanup(quiet_close, s)
        return s

    def assertMessage(self, msg, data, mail_options=None, mail_from=None, rcpt_tos=None):
        """A printed message is @data as received, with X-Peer, and the
        'mail options' line exactly when options were given; the envelope
        lines name mail_from and rcpt_tos when they are given."""
        self.assertEqual(msg["mail_options"], mail_options)
        if mail_from is not None:
            self.assertEqual(msg["mail_from"], mail_from)
        if rcpt_tos is not None:
            self.assertEqual(msg["rcpt_tos"], list(rcpt_tos))
        expected = debugging_view(data)
        if msg["data"] != expected:
            # Show where they differ rather than two huge blobs.
            got = msg["data"]
            i = next((k for k in range(min(len(got), len(expected))) if got[k] != expected[k]),
                     min(len(got), len(expected)))
            self.fail("printed data differs at byte %d (lengths: got %d, expected %d):\n"
                      "got      %r\nexpected %r" % (i, len(got), len(expected),
                                                   got[max(0, i - 40):i + 40],
                                                   expected[max(0, i - 40):i + 40]))
