#!/usr/bin/env python3
"""An old smtpd.SMTPServer.process_message() as a program for smtpd -c Pipe:

    smtpd -c Pipe --pipe 'python3 examples/process_message.py' localhost:8025

smtpd gives this program the message on standard input and the envelope in
its environment; its exit status is the client's answer. Replace the body
of process_message() with yours: return None to accept (250), or a reply
string as Python's smtpd took it: a "4xx ..." reply makes the client retry
later (exit 75, smtpd answers 451), a "5xx ..." one refuses the message
(smtpd answers 554 with the text after the code).
"""

import os
import sys


def process_message(peer, mailfrom, rcpttos, data, **kwargs):
    if any(r.endswith("@blocked.example") for r in rcpttos):
        return "550 recipient blocked here"
    with open(os.environ.get("KEEP", "/dev/null"), "ab") as f:
        f.write(data + b"\n")
    return None


def main():
    peer = (os.environ["CLIENT_ADDRESS"], 0)
    rcpttos = os.environ["RECIPIENTS"].split(",")
    data = sys.stdin.buffer.read()
    reply = process_message(peer, os.environ["SENDER"], rcpttos, data)
    if reply is None:
        return 0
    sys.stderr.write(reply[4:] + "\n")
    return 75 if reply.startswith("4") else 1


if __name__ == "__main__":
    sys.exit(main())
