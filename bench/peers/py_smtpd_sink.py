#!/usr/bin/env python3
"""Sink on Python's stdlib smtpd module (Python <= 3.11; removed in 3.12).

process_message() returns None: "250 OK", the message is thrown away.
By default this is stock smtpd: asyncore.loop() with select() and the
listen(5) backlog that smtpd.SMTPServer hard-codes.  --poll and --backlog
change that (bench/run.py uses them only for the idle-connection test,
where select() cannot go past FD_SETSIZE = 1024 descriptors).
"""
import argparse
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import asyncore  # noqa: E402
import smtpd  # noqa: E402


class SinkServer(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--poll", action="store_true", help="poll() instead of select()")
    ap.add_argument("--backlog", type=int, default=5)
    a = ap.parse_args()
    srv = SinkServer((a.host, a.port), None, data_size_limit=33554432, decode_data=False)
    if a.backlog != 5:
        srv.listen(a.backlog)
    print(f"py_smtpd_sink: Python {sys.version.split()[0]} on {a.host}:{a.port}", flush=True)
    try:
        asyncore.loop(use_poll=a.poll)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
