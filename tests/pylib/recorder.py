"""A recording upstream SMTP server: aiosmtpd (Debian python3-aiosmtpd, which
mailman3 depends on). The relay and MailmanProxy tests start it through
smtpdtest.Recorder:

    /usr/bin/python3 recorder.py --port PORT --out FILE [--no-smtputf8]

Listens on 127.0.0.1:PORT and appends one JSON line to FILE per event:

    {"event": "connect", "peer": [addr, port]}       (at the first HELO/EHLO)
    {"event": "message", "peer": [addr, port], "helo": ..., "mail_from": ...,
     "rcpt_tos": [...], "mail_options": [...], "rcpt_options": [[...], ...],
     "data": base64 of the raw data (dot-unstuffed, CRLF kept)}

Recipients whose local part starts with "reject" are refused 550 5.1.1,
those starting with "defer" 450 4.2.1. Prints "READY" on standard output
once it serves, then runs until SIGTERM/SIGINT.
"""

import argparse
import base64
import json
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Journal:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, obj):
        line = (json.dumps(obj, ensure_ascii=True) + "\n").encode("ascii")
        with self.lock:
            os.write(self.fd, line)
            os.fsync(self.fd)


class Handler:
    def __init__(self, journal):
        self.journal = journal

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        if local.startswith("defer"):
            return "450 4.2.1 <%s>: Recipient address deferred" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(list(rcpt_options))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if isinstance(data, str):  # never with decode_data=False
            data = data.encode("utf-8", "surrogateescape")
        self.journal.write({
            "event": "message",
            "peer": list(session.peer[:2]),
            "helo": session.host_name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "rcpt_options": [list(o) for o in envelope.rcpt_options],
            "data": base64.b64encode(data).decode("ascii"),
        })
        return "250 2.0.0 OK: queued"


class CountingSMTP(SMTP):
    """Logs a "connect" event at a connection's first HELO/EHLO (the
    controller's start-up probe never greets)."""
    journal = None
    greeted = False

    def _count(self):
        if not self.greeted and self.journal is not None:
            self.greeted = True
            self.journal.write({"event": "connect", "peer": list(self.session.peer[:2])})

    async def smtp_EHLO(self, arg):
        self._count()
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg):
        self._count()
        await super().smtp_HELO(arg)


class RecordingController(Controller):
    def __init__(self, handler, journal, **kw):
        super().__init__(handler, **kw)
        self.journal = journal

    def factory(self):
        s = CountingSMTP(self.handler, **self.SMTP_kwargs)
        s.journal = self.journal
        return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-smtputf8", action="store_true")
    args = ap.parse_args()
    journal = Journal(args.out)
    ctl = RecordingController(Handler(journal), journal, hostname="127.0.0.1", port=args.port,
                              enable_SMTPUTF8=not args.no_smtputf8, decode_data=False,
                              ready_timeout=10)
    ctl.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    stop.wait()
    ctl.stop()


if __name__ == "__main__":
    main()
