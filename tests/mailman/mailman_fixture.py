"""Fixtures for the MailmanProxy tests: a private Mailman 3 core, recording
SMTP servers, the smtpd proxy under test and a raw SMTP client.

Mailman (Debian package mailman3, see ../../../shared/research/mailman3.md)
runs from its own temporary directory with SQLite, LMTP/REST/outgoing SMTP on
free 127.0.0.1 ports and the nntp/archive/digest runners off. It is started
once per test run (about 1 GiB of RAM and ~10 s) and always stopped again:
`mailman stop`, then wait for the master pid, then SIGKILL whatever process
still runs with our config file on its command line.

Only the Python standard library is used (plus aiosmtpd inside recorder.py,
which mailman3 depends on). A missing tool is a failure, never a skip.

What every test directory shares (starting and stopping smtpd, the recorder,
the raw client, ports, /proc) is in tests/pylib/smtpdtest.py; here is what
only the MailmanProxy tests use.
"""

import base64
import email
import email.policy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import smtpdtest  # noqa: E402
from smtpdtest import (SYSTEM_PYTHON, free_port, refused_port, smtpd_bin, take_path_args,  # noqa: E402,F401
                       wait_until)

MAILMAN = "/usr/bin/mailman"
MAILMAN_BIN_DIR = "/usr/lib/mailman3/bin"
REST_USER = "restadmin"
REST_PASS = "restpass"


def log(msg):
    sys.stderr.write("[mailman-test %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def closed_port():
    """A loopback port where nothing listens, and nothing will."""
    return refused_port()


def need_mailman():
    missing = [p for p in (MAILMAN, os.path.join(MAILMAN_BIN_DIR, "master"), SYSTEM_PYTHON)
               if not os.access(p, os.X_OK)]
    try:
        subprocess.run([SYSTEM_PYTHON, "-c", "import aiosmtpd"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        missing.append("python3 module aiosmtpd")
    if missing:
        raise AssertionError(
            "Mailman 3 is not installed (missing: %s). The MailmanProxy tests need Debian's "
            "mailman3 package: run scripts/install-deps as root, or "
            "apt-get install --no-install-recommends mailman3" % ", ".join(missing))


# ---------------------------------------------------------------- Mailman


class Mailman:
    """A private Mailman 3 core in its own directory."""

    def __init__(self, outgoing_port):
        self.dir = tempfile.mkdtemp(prefix="smtpd-mailman-")
        self.cfg = os.path.join(self.dir, "mailman.cfg")
        self.var = os.path.join(self.dir, "var")
        self.lmtp_port = free_port()
        self.rest_port = free_port()
        self.outgoing_port = outgoing_port
        self.master_pid = None
        self.running = False
        self._write_config()

    def _write_config(self):
        nopostmap = os.path.join(self.dir, "postfix-nopostmap.cfg")
        with open(nopostmap, "w") as f:
            f.write("[postfix]\n"
                    "# plain-text transport maps only: no postmap needed\n"
                    "postmap_command: /bin/true\n"
                    "transport_file_type: hash\n")
        with open(self.cfg, "w") as f:
            f.write("""\
[mailman]
layout: testing
site_owner: postmaster@example.org

[paths.testing]
var_dir: {dir}/var
bin_dir: {bindir}

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///$DATA_DIR/mailman.db

[mta]
incoming: mailman.mta.postfix.LMTP
outgoing: mailman.mta.deliver.deliver
lmtp_host: 127.0.0.1
lmtp_port: {lmtp}
smtp_host: 127.0.0.1
smtp_port: {smtp}
configuration: {nopostmap}

[webservice]
hostname: 127.0.0.1
port: {rest}
admin_user: {user}
admin_pass: {password}
workers: 1

[logging.smtp]
# the LMTP runner logs each delivered recipient ("<msgid> to: ...") at debug
level: debug

[runner.nntp]
start: no

[runner.archive]
start: no

[runner.digest]
start: no
""".format(dir=self.dir, bindir=MAILMAN_BIN_DIR, lmtp=self.lmtp_port, smtp=self.outgoing_port,
           nopostmap=nopostmap, rest=self.rest_port, user=REST_USER, password=REST_PASS))

    def cli(self, *args, timeout=60):
        """Run `mailman ARGS`; return (exit code, output). The output goes
        through a file: `mailman start` leaves a daemon holding its stdout."""
        with tempfile.TemporaryFile(dir=self.dir) as out:
            r = subprocess.run([MAILMAN, "--run-as-root", "-C", self.cfg] + list(args),
                               cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=timeout,
                               env=dict(os.environ, MAILMAN_CONFIG_FILE=self.cfg))
            out.seek(0)
            return r.returncode, out.read().decode("utf-8", "replace")

    # -- readiness

    def lmtp_ready(self):
        try:
            with socket.create_connection(("127.0.0.1", self.lmtp_port), 1) as s:
                s.settimeout(2)
                return b"GNU Mailman LMTP" in s.recv(200)
        except OSError:
            return False

    def rest_ready(self):
        try:
            status, _ = self.rest("GET", "/system/versions", timeout=2)
            return status == 200
        except (OSError, ValueError):
            return False

    def start(self, timeout=60):
        t0 = time.monotonic()
        self.running = True  # whatever happens: stop() must clean up
        rc, output = self.cli("start", "--force")
        # `mailman start` exits 0 even when a runner cannot bind: poll both ports.
        ok = wait_until(lambda: self.lmtp_ready() and self.rest_ready(), timeout, 0.2)
        self.master_pid = self._read_master_pid()
        if not ok:
            raise AssertionError(
                "Mailman did not answer on LMTP 127.0.0.1:%d and REST 127.0.0.1:%d within %d s\n"
                "mailman start (rc %d):\n%s\nmailman.log:\n%s\nerror.log:\n%s" %
                (self.lmtp_port, self.rest_port, timeout, rc, output, self.log_text("mailman.log")[-4000:],
                 self.log_text("error.log")[-4000:]))
        log("Mailman ready in %.1f s (LMTP %d, REST %d, outgoing SMTP %d, dir %s)" %
            (time.monotonic() - t0, self.lmtp_port, self.rest_port, self.outgoing_port, self.dir))

    def _read_master_pid(self):
        try:
            with open(os.path.join(self.var, "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _our_pids(self):
        """Processes that run with our config file on their command line."""
        return smtpdtest.pids_with_cmdline(self.cfg.encode())

    def stop(self, timeout=30):
        """Stop Mailman and wait until all of its processes are gone."""
        if not self.running:
            return
        self.running = False
        t0 = time.monotonic()
        pid = self._read_master_pid() or self.master_pid
        try:
            rc, output = self.cli("stop", timeout=30)
            if rc != 0:
                log("mailman stop: exit %d: %s" % (rc, output.strip()))
        except (OSError, subprocess.SubprocessError) as e:
            log("mailman stop failed: %s" % e)
        if pid:
            wait_until(lambda: not smtpdtest.proc_alive(pid), timeout, 0.2)
        # The REST worker is usually the last; give the rest a moment, then kill.
        wait_until(lambda: not self._our_pids(), 5, 0.2)
        left = self._our_pids()
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if left:
            log("killed leftover Mailman processes %s" % left)
            wait_until(lambda: not any(smtpdtest.proc_alive(p) for p in left), 5, 0.1)
        log("Mailman stopped in %.1f s" % (time.monotonic() - t0))

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- REST

    def rest(self, method, path, data=None, timeout=15):
        url = "http://127.0.0.1:%d/3.1%s" % (self.rest_port, path)
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(url, data=body, method=method)
        token = base64.b64encode(("%s:%s" % (REST_USER, REST_PASS)).encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            status = e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def rest_ok(self, method, path, data=None):
        status, body = self.rest(method, path, data)
        if status // 100 != 2:
            raise AssertionError("REST %s %s %r -> %d %r" % (method, path, data, status, body))
        return body

    def held(self, list_id):
        body = self.rest_ok("GET", "/lists/%s/held" % list_id)
        return body.get("entries", []) if isinstance(body, dict) else []

    # -- logs

    def log_text(self, name):
        try:
            with open(os.path.join(self.var, "logs", name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def lmtp_deliveries(self, message_id):
        """The recipients that the LMTP runner took in DATA for the message
        with this Message-ID, as it logged them (lower-cased addresses), in
        order."""
        pat = re.compile(re.escape(message_id) + r" to: (\S+), list: ")
        return pat.findall(self.log_text("smtp.log"))


# ---------------------------------------------------------------- recorder


class Recorder(smtpdtest.Recorder):
    """recorder.py (see smtpdtest.Recorder) journaling to WORKDIR/NAME.jsonl,
    its messages parsed and picked by a token."""

    def __init__(self, workdir, name):
        self.name = name
        path = os.path.join(workdir, name + ".jsonl")
        open(path, "w").close()
        super().__init__(journal=path, start_timeout=20)

    def connects(self):
        return len(self.connections())

    def messages(self, token=None):
        """Recorded messages (data decoded to bytes, "msg" parsed), those
        whose data contains token when given."""
        out = []
        for e in super().messages():
            if token is not None and token.encode() not in e["data"]:
                continue
            e["msg"] = email.message_from_bytes(e["data"], policy=email.policy.compat32)
            out.append(e)
        return out

    def wait_messages(self, token, count=1, timeout=60, pred=None):
        """Wait until at least count messages containing token (and passing
        pred) were recorded; return them all."""
        def got():
            m = [e for e in self.messages(token) if pred is None or pred(e)]
            return m if len(m) >= count else None
        return wait_until(got, timeout, 0.25) or \
            [e for e in self.messages(token) if pred is None or pred(e)]

    def stop(self):
        self.close(timeout=10)


# ---------------------------------------------------------------- the proxy


class Proxy(smtpdtest.Smtpd):
    """`smtpd -n -d -c MailmanProxy ... 127.0.0.1:0 127.0.0.1:SMARTHOST`."""

    # Short: test_sigterm_exits_promptly is the test of how it exits.
    TERM_WAIT = 3

    def __init__(self, lmtp_port, smarthost_port, *extra):
        super().__init__("-d", "-c", "MailmanProxy",
                         "--mailman-lmtp", "127.0.0.1:%d" % lmtp_port,
                         "--hostname", "proxy.test", "--relay-timeout", "20", *extra,
                         cls=None, extra=["127.0.0.1:%d" % smarthost_port],
                         stdout=subprocess.DEVNULL)

    def log(self):
        """The last 150 lines of its log."""
        text = self.err.data().decode("utf-8", "replace").removesuffix("\n")
        return "\n".join(text.split("\n")[-150:])

    stop = smtpdtest.Smtpd.close


# ---------------------------------------------------------------- SMTP client


class Client(smtpdtest.RawClient):
    """A raw SMTP client (see smtpdtest.RawClient) that returns each reply
    as (code, text), keeps a transcript for failure messages and can check
    that the server sent nothing it was not asked for."""

    ERRORS = "replace"

    def __init__(self, port, timeout=60):
        super().__init__(port, timeout=10)
        self.sock.settimeout(timeout)
        self.transcript = []
        self.greeting = self.reply()

    def _line(self):
        try:
            line = super()._line()
        except EOFError:
            raise ConnectionError("server closed the connection; transcript:\n" +
                                  "\n".join(self.transcript))
        self.transcript.append("S: " + line.decode("utf-8", "replace"))
        return line

    def reply(self):
        code, texts = super().reply()
        return code, "\n".join(texts)

    def cmd(self, line):
        self.transcript.append("C: " + line)
        return self.command(line)

    def data(self, message):
        """DATA, the message (dot-stuffed), the final dot: the final reply."""
        code, text = self.cmd("DATA")
        if code != 354:
            return code, text
        body = smtpdtest.stuff(message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        self.transcript.append("C: <%d bytes>" % len(body))
        self.sock.sendall(body + b".\r\n")
        return self.reply()

    def unsolicited(self, wait=1.0):
        """Bytes the server sent without being asked (within wait seconds)."""
        extra = self.buf
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                extra += chunk
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(60)
        self.buf = b""
        return extra

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.sock.settimeout(5)
            self.sock.recv(1000)
        except OSError:
            pass
        self.sock.close()
