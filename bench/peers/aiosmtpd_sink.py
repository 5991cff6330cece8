#!/usr/bin/env python3
"""Sink on aiosmtpd (asyncio default loop) with aiosmtpd.handlers.Sink, or
with --handler data a handler whose handle_DATA returns "250 OK" (what a
user's do-nothing handler is; bench/python.py).

hostname is fixed so that aiosmtpd does not call socket.getfqdn() for
every connection (its default when hostname is None).
"""
import argparse
import asyncio
import logging
import sys

from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP, __version__


class Data250:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backlog", type=int, default=100)
    ap.add_argument("--handler", choices=("sink", "data"), default="sink",
                    help="sink: aiosmtpd.handlers.Sink (default); data: handle_DATA returns 250 OK")
    a = ap.parse_args()
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = Data250 if a.handler == "data" else Sink

    async def run():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(handler(), hostname="bench.local"),
                                          host=a.host, port=a.port, backlog=a.backlog)
        print(f"aiosmtpd_sink: aiosmtpd {__version__} Python {sys.version.split()[0]} "
              f"handler {handler.__name__} on {a.host}:{a.port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
