"""What the PROXY protocol tests share.

Each test_*.py here is one CTest test (proxy_<topic>), run as

    /usr/bin/python3 -B test_<topic>.py --smtpd PATH/smtpd

Every test starts its own servers on loopback free ports (smtpd, the
aiosmtpd recorder, HAProxy with a configuration written for the test) and
stops them again. A missing tool is a failure, never a skip.

From tests/pylib/smtpdtest.py (starting smtpd, the recorder, the raw
client) and tests/tls/tlslib.py (certificates made for the run); added
here: TlsFiles, a certificate pair for one test.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
sys.path.insert(0, os.path.join(HERE, "..", "tls"))
import smtpdtest  # noqa: E402
import tlslib  # noqa: E402
from smtpdtest import (SLOW, Recorder, RawClient, Smtpd, TestCase, free_port, need,  # noqa: E402,F401
                       smtpd_bin, stop_process, wait_port, wait_until)


def main():
    smtpdtest.main()


class TlsFiles:
    """A certificate for localhost and 127.0.0.1 and its key (cert, key),
    made for one test and removed after it."""

    def __init__(self, test):
        certs = tlslib.Certs()
        test.addCleanup(certs.cleanup)
        self.cert, self.key = certs.cert, certs.key
        self.ca = certs.ca
