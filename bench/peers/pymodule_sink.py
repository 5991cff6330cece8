#!/usr/bin/env python3
"""Sink on the project's smtpd extension module (python/, built into
build/python/cpXY/): the same code as py_smtpd_sink.py, with smtpd.loop()
in place of asyncore.loop().

process_message() returns None: "250 OK", the message is thrown away.
--pythonpath DIR is put first on sys.path (or give PYTHONPATH); the script
refuses to run on the stdlib module (no smtpd.loop, or a __version__ that is
not libsmtpd's).
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pythonpath", help="directory holding the smtpd package (put first on sys.path)")
    a = ap.parse_args()
    if a.pythonpath:
        sys.path.insert(0, os.path.abspath(a.pythonpath))
    import smtpd

    if not hasattr(smtpd, "loop") or not str(getattr(smtpd, "__version__", "")).startswith("libsmtpd"):
        raise SystemExit(f"pymodule_sink: {smtpd.__file__} is not the project's smtpd module")

    class SinkServer(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            return None

    SinkServer((a.host, a.port), None, data_size_limit=33554432, decode_data=False)
    print(f"pymodule_sink: {smtpd.__version__} ({os.path.dirname(smtpd.__file__)}) "
          f"Python {sys.version.split()[0]} on {a.host}:{a.port}", flush=True)
    try:
        smtpd.loop()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
