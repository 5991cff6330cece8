"""What the AUTH tests (tests/auth/test_*.py) share: accounts files made
with the real hashing tools, the SASL responses in base64, an SMTP client
on a socket that can STARTTLS or start in TLS, and a test case with one set
of certificates (tlslib, made per run) per class.

    accounts = make_accounts(dir, {"alice": ("sha512", "pw"), ...})
    plain_b64("alice", "pw")      base64 of "\\0alice\\0pw"
    c = TlsClient(port, ca); c.starttls()   or TlsClient.implicit(port, ca)

Standard library, openssl and mkpasswd (Debian package whois) only. The
passwords go to the tools on standard input, never on a command line.
"""

import base64
import os
import subprocess
import ssl
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
import smtpd_harness  # noqa: E402
from smtpd_harness import SmtpdTestCase, main, quiet_close, run_smtpd  # noqa: E402,F401
from smtpdtest import RawClient, free_port, need, SLOW  # noqa: E402,F401
import tlslib  # noqa: E402

OPENSSL = "/usr/bin/openssl"
MKPASSWD = "/usr/bin/mkpasswd"

EX_USAGE = smtpd_harness.EX_USAGE
EX_CONFIG = 78

# LOGIN's challenges: "Username:" and "Password:" in base64.
USERNAME_CHALLENGE = "VXNlcm5hbWU6"
PASSWORD_CHALLENGE = "UGFzc3dvcmQ6"


def b64(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return base64.b64encode(s).decode("ascii")


def plain_b64(user, password, authzid=""):
    """A PLAIN response (RFC 4616): authzid NUL authcid NUL passwd."""
    return b64("%s\0%s\0%s" % (authzid, user, password))


def crypt_hash(method, password):
    """A crypt(3) hash of password: "sha512" by `openssl passwd -6`,
    "yescrypt" by `mkpasswd -m yescrypt` (Debian package whois)."""
    if method == "sha512":
        argv = [need(OPENSSL, "openssl"), "passwd", "-6", "-stdin"]
    elif method == "yescrypt":
        argv = [need(MKPASSWD, "whois"), "-m", "yescrypt", "--stdin"]
    else:
        raise ValueError(method)
    r = subprocess.run(argv, input=password.encode("utf-8") + b"\n", capture_output=True,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError("%s failed: %r" % (argv, r.stderr))
    h = r.stdout.decode("ascii").strip()
    prefix = {"sha512": "$6$", "yescrypt": "$y$"}[method]
    if not h.startswith(prefix):
        raise AssertionError("%s printed %r, not a %s hash" % (argv, h, prefix))
    return h


def write_accounts(path, accounts, mode=0o600):
    """Write an --auth-file: accounts maps user -> (method, password).
    Made with mode 600 from the start (then chmod to mode)."""
    lines = ["# made by tests/auth for this run"]
    for user, (method, password) in accounts.items():
        lines.append("%s:%s" % (user, crypt_hash(method, password)))
    tmp = path + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


class TlsClient(RawClient):
    """RawClient that can STARTTLS (starttls()) or begin in TLS
    (implicit()), verifying the server against the test CA for localhost."""

    def __init__(self, port, ca=None, **kw):
        super().__init__(port, **kw)
        self.ca = ca

    def context(self):
        return ssl.create_default_context(cafile=self.ca)

    def starttls(self):
        code, text = self.command("STARTTLS")
        if code != 220:
            raise AssertionError("STARTTLS answered %d %r" % (code, text))
        if self.buf:
            raise AssertionError("data after the 220 to STARTTLS: %r" % self.buf)
        self.sock = self.context().wrap_socket(self.sock, server_hostname="localhost")
        return code

    @classmethod
    def implicit(cls, port, ca, **kw):
        c = cls(port, ca, **kw)
        c.sock = c.context().wrap_socket(c.sock, server_hostname="localhost")
        return c

    def ehlo(self, name="client.example.com"):
        """EHLO: (code, [keyword lines])."""
        return self.command("EHLO " + name)


def keywords(lines):
    """The EHLO keywords (upper case, first word) of a 250 reply's lines
    after the greeting line."""
    return [l.split(" ", 1)[0].upper() for l in lines[1:]]


class AuthCase(SmtpdTestCase):
    """One set of certificates per class; temporary directories removed
    after each test; start_auth() starts smtpd with STARTTLS, an --smtps
    listener and the given options."""

    @classmethod
    def setUpClass(cls):
        cls.certs = tlslib.Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def tmpdir(self):
        d = tempfile.TemporaryDirectory(prefix="smtpd-auth-")
        self.addCleanup(d.cleanup)
        return d.name

    def tls_options(self, smtps=False):
        """The TLS options; with smtps an --smtps listener on a port smtpd
        picks (srv.smtps_port())."""
        opts = ["--tls-cert", self.certs.cert, "--tls-key", self.certs.key]
        if smtps:
            opts += ["--smtps", "127.0.0.1:0"]
        return opts

    def start_auth(self, *options, cls="DebuggingServer", smtps=True, **kw):
        """smtpd -c cls with TLS (and --smtps when smtps) and options; the
        --smtps port is srv.smtps."""
        srv = self.start(*(self.tls_options(smtps) + list(options)), cls=cls, **kw)
        srv.smtps = srv.smtps_port() if smtps else None
        return srv

    def client(self, port, **kw):
        c = TlsClient(port, self.certs.ca, **kw)
        self.addCleanup(c.close)
        return c

    def implicit_client(self, port, **kw):
        c = TlsClient.implicit(port, self.certs.ca, **kw)
        self.addCleanup(c.close)
        return c

    def tls_session(self, srv, implicit=False, **kw):
        """A client greeted and past EHLO, over STARTTLS or implicit TLS
        (kw: RawClient's, e.g. source="127.0.0.2")."""
        if implicit:
            c = self.implicit_client(srv.smtps, **kw)
        else:
            c = self.client(srv.port, **kw)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.ehlo()[0], 250)
        if not implicit:
            c.starttls()
            self.assertEqual(c.ehlo()[0], 250)
        return c

    def plain_session(self, srv):
        c = self.client(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.ehlo()[0], 250)
        return c
