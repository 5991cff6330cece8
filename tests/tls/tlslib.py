"""Certificates for the TLS tests, made with `openssl req` for each run
(never committed): a CA, a server certificate it signed for localhost and
127.0.0.1, a second CA that signed nothing (the "wrong CA"), and files that
are not a certificate at all. Standard library and the openssl program only.

    certs = Certs()          # a temporary directory, removed by cleanup()
    certs.ca, certs.cert, certs.key, certs.other_ca, certs.garbage
    certs.new_pair("renewed")  # another pair from the same CA: (cert, key)
"""

import os
import shutil
import subprocess
import tempfile


def openssl(*args, cwd):
    exe = shutil.which("openssl")
    if not exe:
        raise AssertionError("openssl not found (Debian package openssl)")
    r = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed:\n%s" % (" ".join(args), r.stderr))


class Certs:
    def __init__(self, cn="localhost"):
        self.dir = tempfile.mkdtemp(prefix="smtpd-tls-")
        self.cn = cn
        self.ca, self.ca_key = self._ca("ca", "smtpd test CA")
        self.other_ca, _ = self._ca("other-ca", "another CA")
        self.cert, self.key = self.new_pair("server")
        self.garbage = os.path.join(self.dir, "garbage.pem")
        with open(self.garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _ca(self, name, subject):
        cert, key = self.path(name + ".pem"), self.path(name + "-key.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + subject,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        return cert, key

    def new_pair(self, name, cn=None):
        """A key and a certificate signed by self.ca for cn (default
        localhost) and 127.0.0.1: (cert_path, key_path)."""
        cn = cn or self.cn
        cert, key, csr = (self.path(name + ".pem"), self.path(name + "-key.pem"),
                          self.path(name + ".csr"))
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" % cn)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + cn, cwd=self.dir)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext, cwd=self.dir)
        return cert, key

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
