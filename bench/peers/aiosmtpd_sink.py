#!/usr/bin/env python3
"""Sink on aiosmtpd (asyncio default loop) with aiosmtpd.handlers.Sink.

hostname is fixed so that aiosmtpd does not call socket.getfqdn() for
every connection (its default when hostname is None).
"""
import argparse
import asyncio
import logging
import sys

from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP, __version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backlog", type=int, default=100)
    a = ap.parse_args()
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def run():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Sink(), hostname="bench.local"),
                                          host=a.host, port=a.port, backlog=a.backlog)
        print(f"aiosmtpd_sink: aiosmtpd {__version__} Python {sys.version.split()[0]} "
              f"on {a.host}:{a.port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
