"""smtpd: Python's smtpd module (removed in Python 3.12), on libsmtpd.

The names and signatures of Python 3.11's smtpd: SMTPServer with
process_message(), SMTPChannel with smtp_<VERB> methods, DebuggingServer,
PureProxy, MailmanProxy, DEBUGSTREAM, and loop() in place of asyncore.loop().
The SMTP dialogue is libsmtpd's (RFC 5321, SIZE, 8BITMIME, SMTPUTF8,
PIPELINING), run by a C event loop; Python code runs on worker threads:

* process_message() runs on WORKERS (4) threads per server, and a channel's
  smtp_<VERB> methods on WORKERS threads of their own, so a slow one never
  stalls the dialogues of the other clients; its session waits for its
  answer, and a fifth slow call waits for a thread.
* process_message() returns None (250) or a reply string, "550 5.1.1 No
  such user" or several "NNN-text" lines ending in "NNN text"; an invalid
  string gives the client 451 and a log line, an exception 451 4.3.0 and the
  traceback in the log ("smtpd" logger).
* data keeps its CRLF line ends (the seed gave LF), as bytes, or as str with
  decode_data=True.
* DebuggingServer prints in C, as the smtpd program does; PureProxy and
  MailmanProxy are libsmtpd's relays (a 250 only once the smarthost took the
  message; relaying only for relay_networks, loopback by default).
"""

import logging
import queue
import sys
import threading
import time
import weakref

try:
    from . import _smtpd
except ImportError as e:  # most often: a build folder of another Python
    raise ImportError("smtpd: the C half (_smtpd) of %s was not built for this Python %d.%d "
                      "(use the build/python/cp%d%d folder, or build for it): %s"
                      % (__path__[0], sys.version_info[0], sys.version_info[1],
                         sys.version_info[0], sys.version_info[1], e)) from e
from ._channel import DATA_SIZE_DEFAULT, Conn, SMTPChannel, command_verbs
from . import _reply

__all__ = ["SMTPChannel", "SMTPServer", "DebuggingServer", "PureProxy", "MailmanProxy",
           "loop", "close_all"]

__version__ = "libsmtpd " + _smtpd.VERSION
program = "python -m smtpd"
NEWLINE = "\n"
COMMASPACE = ", "
WORKERS = 4  # process_message calls running at once, per server (and smtp_<VERB> calls)

logger = logging.getLogger("smtpd")


class Devnull:
    def write(self, msg):
        pass

    def flush(self):
        pass


DEBUGSTREAM = Devnull()

_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
_servers = weakref.WeakSet()


def _log(level, line):
    """libsmtpd's log lines (peer text already escaped)."""
    if not isinstance(DEBUGSTREAM, Devnull):
        print(line, file=DEBUGSTREAM)
    else:
        logger.log(_LEVELS[level], "%s", line)


_smtpd.set_log(_log)


def _log_level():
    if not isinstance(DEBUGSTREAM, Devnull) or logger.isEnabledFor(logging.DEBUG):
        return 3
    return 2 if logger.isEnabledFor(logging.INFO) else 1


def _hostport(addr):
    """(host, port), as the seed's socket addresses: "host:port"."""
    if not isinstance(addr, (tuple, list)) or len(addr) != 2 or not isinstance(addr[0], str):
        raise TypeError("an address is a (host, port) tuple, not %r" % (addr,))
    host, port = addr[0], int(addr[1])
    if ":" in host:
        host = "[%s]" % host
    return "%s:%d" % (host, port)


def _split_hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class _Workers:
    """WORKERS daemon threads running fn(*item) for each item put in the
    queue. The C half puts the items itself (SimpleQueue.put is C code, so
    no Python code, and no signal handler, runs inside a libsmtpd callback).
    Not concurrent.futures: its pool refuses work once the main thread has
    ended, while a loop() on another thread still serves."""

    def __init__(self, fn, name, closed):
        self.queue = queue.SimpleQueue()
        self._fn = fn
        self._closed = closed
        self.threads = [threading.Thread(target=self._run, name="%s-%d" % (name, i), daemon=True)
                        for i in range(WORKERS)]
        for t in self.threads:
            t.start()

    def _run(self):
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                # A closed server's sessions are gone once the C half has
                # freed it (close() lets them finish first): then stop.
                if self._closed():
                    return
                continue
            if item is None:
                return
            try:
                self._fn(*item)
            except BaseException:  # noqa: B902 - nothing above a worker would see it
                logger.exception("smtpd worker: unexpected error")

    def stop(self):
        """The threads end once they have taken what is queued."""
        for _ in self.threads:
            self.queue.put(None)


class _ListeningSocket:
    """server.socket: the listening address, as the seed's socket gave it."""

    def __init__(self, server):
        self._server = server

    def getsockname(self):
        addresses = self._server._core.addresses()
        if not addresses:  # closed: where it listened
            return self._server.addr
        return _split_hostport(addresses[0])

    def close(self):
        self._server.close()


class SMTPServer:
    # SMTPChannel class to use for managing client connections
    channel_class = SMTPChannel
    _engine = _smtpd.ENGINE_PYTHON

    def __init__(self, localaddr, remoteaddr, data_size_limit=DATA_SIZE_DEFAULT, map=None,
                 enable_SMTPUTF8=False, decode_data=False, *, hostname=None,
                 relay_networks=None, mailman_lmtp=None, mailman_domains=None):
        self._localaddr = localaddr
        self._remoteaddr = remoteaddr
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self._map = map
        if enable_SMTPUTF8 and decode_data:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot"
                             " be set to True at the same time")
        if hostname is not None and (not isinstance(hostname, str) or not hostname
                                     or not hostname.isprintable() or " " in hostname):
            raise ValueError("hostname must be a non-empty name without spaces or controls")
        upstream = _hostport(remoteaddr) if self._engine == _smtpd.ENGINE_RELAY else None
        verbs = command_verbs(self.channel_class)
        engine = self._engine_for()
        self._pools = []
        closed = self._is_closed
        if engine == _smtpd.ENGINE_PYTHON:
            self._pools.append(_Workers(self._run_message, "smtpd-%s" % type(self).__name__,
                                        closed))
            self._on_message = self._pools[-1].queue.put
        if verbs:
            self._pools.append(_Workers(self._run_command, "smtpd-%s-cmd" % type(self).__name__,
                                        closed))
            self._on_command = self._pools[-1].queue.put
        try:
            self._core = self._make_core(engine, localaddr, data_size_limit, enable_SMTPUTF8,
                                         decode_data, hostname, verbs, upstream, relay_networks,
                                         mailman_lmtp, mailman_domains)
        except BaseException:
            self._stop_pools()
            raise
        self.socket = _ListeningSocket(self)
        self.addr = self.socket.getsockname()
        _servers.add(self)
        if map is not None:
            map[id(self)] = self
        print("%s started at %s\n\tLocal addr: %s\n\tRemote addr:%s" % (
            self.__class__.__name__, time.ctime(time.time()), localaddr, remoteaddr),
            file=DEBUGSTREAM)

    def _make_core(self, engine, localaddr, data_size_limit, enable_SMTPUTF8, decode_data,
                   hostname, verbs, upstream, relay_networks, mailman_lmtp, mailman_domains):
        return _smtpd.Server(
            self, engine, _hostport(localaddr), data_size_limit=data_size_limit or 0,
            smtputf8=bool(enable_SMTPUTF8), decode_data=bool(decode_data), hostname=hostname,
            log_level=_log_level(), verbs=verbs, upstream=upstream,
            relay_networks=relay_networks, mailman_lmtp=mailman_lmtp,
            mailman_domains=mailman_domains)

    def _stop_pools(self):
        for pool in self._pools:
            pool.stop()
        self._pools = []

    def _engine_for(self):
        return self._engine

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _is_closed(self):
        core = getattr(self, "_core", None)
        return core is None or core.closed

    def close(self, wait=True):
        """Stop listening and end the sessions, from any thread, as the smtpd
        program does at SIGTERM: idle ones get 421 at once, a transaction in
        progress finishes first (its process_message answers its client; up
        to 30 s). While loop() runs elsewhere, close() returns once they have
        ended, unless wait is false or it is called from process_message or a
        channel method (which finish first). Without a running loop every
        session is closed at once (wait=False: the next loop() ends them)."""
        me = threading.current_thread()
        on_worker = any(me in pool.threads for pool in self._pools)
        self._core.close(wait=wait and not on_worker)
        if self._map is not None:
            self._map.pop(id(self), None)

    # The C half puts (session, seq, ...) into the queue of a _Workers
    # (self._on_message, self._on_command); a worker thread runs these. Every
    # way out answers the session once: whatever the user's code raises
    # (SystemExit and KeyboardInterrupt too: on a worker thread they would
    # only end it) is a 451 and a traceback in the log.
    def _run_message(self, session, seq, peer, mailfrom, rcpttos, data, mail_options):
        kwargs = {} if self._decode_data else {"mail_options": mail_options, "rcpt_options": []}
        try:
            status = self.process_message(peer, mailfrom, rcpttos, data, **kwargs)
            reply = self._reply(status, "process_message")
        except BaseException:  # noqa: B902 - see above
            logger.exception("process_message raised; the client gets 451 4.3.0")
            reply = (451, "4.3.0", ("Error: the message could not be processed",))
        session.answer(seq, *reply)

    def _run_command(self, session, seq, verb, arg, snapshot):
        try:
            channel = session.channel
            if channel is None:
                peer, local = snapshot[0], snapshot[1]
                channel = self.channel_class(self, Conn(peer, local), peer, self.data_size_limit,
                                             self._map, self.enable_SMTPUTF8, self._decode_data)
                session.channel = channel
            channel._begin(verb, snapshot)
            getattr(channel, "smtp_" + verb)(arg)
            builtin, replies = channel._builtin, channel._replies
            if builtin is not None and replies:
                logger.warning("smtp_%s pushed %r and ran the built-in command: the built-in"
                               " command's reply is sent, the pushed lines are dropped",
                               verb, replies)
            if builtin is not None:
                session.run_builtin(seq, builtin)
                return
            reply = (self._reply("\r\n".join(replies), "smtp_" + verb, True) if replies
                     else (250, None, (None,)))
        except BaseException:  # noqa: B902 - see above
            logger.exception("smtp_%s raised; the client gets 451 4.3.0", verb)
            reply = (451, "4.3.0", ("Error: the command failed",))
        session.answer(seq, *reply)

    @staticmethod
    def _reply(status, where, allow_3xx=False):
        """(code, enhanced, lines) for what process_message returned or a
        channel pushed; an invalid reply is 451, with an error log line."""
        if not status:
            return 250, None, ("OK",)
        try:
            return _reply.parse(status, allow_3xx)
        except Exception as e:  # ValueError, or a str subclass that misbehaves
            logger.error("%s gave the invalid reply %r (%s); the client gets 451", where, status, e)
            return 451, "4.3.0", ("Error: the server gave an invalid reply",)

    # API for "doing something useful with the message"
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        """Override this abstract method to handle messages from the client.

        peer is a tuple containing (ipaddr, port) of the client that made the
        socket connection to our smtp port.

        mailfrom is the raw address the client claims the message is coming
        from ('' for the null reverse-path <>).

        rcpttos is a list of raw addresses the client wishes to deliver the
        message to.

        data is the message: bytes, or str when decode_data=True was given,
        dot-unstuffed (RFC 5321 4.5.2), with its CRLF line ends.

        kwargs is empty if decode_data=True was given, otherwise it holds
            'mail_options': list of parameters to the mail command, upper-
                            cased, e.g. ['BODY=8BITMIME', 'SMTPUTF8'].
            'rcpt_options': same, for the rcpt command.

        Return None for a normal '250 OK' reply, otherwise the reply string
        in RFC 5321 form. It runs on a worker thread (WORKERS per server).
        """
        raise NotImplementedError


class DebuggingServer(SMTPServer):
    """Prints each message to standard output (in C, as the smtpd program
    does). A subclass that overrides process_message gets the seed's Python
    printing from super().process_message()."""

    _engine = _smtpd.ENGINE_DEBUGGING

    def _engine_for(self):
        if type(self).process_message is not DebuggingServer.process_message:
            return _smtpd.ENGINE_PYTHON
        return self._engine

    def _print_message_content(self, peer, data):
        inheaders = 1
        lines = data.splitlines()
        for line in lines:
            # headers first
            if inheaders and not line:
                peerheader = "X-Peer: " + peer[0]
                if not isinstance(data, str):
                    peerheader = repr(peerheader.encode("utf-8"))
                print(peerheader)
                inheaders = 0
            if not isinstance(data, str):
                line = repr(line)
            print(line)

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        print("---------- MESSAGE FOLLOWS ----------")
        if kwargs:
            if kwargs.get("mail_options"):
                print("mail options: %s" % kwargs["mail_options"])
            if kwargs.get("rcpt_options"):
                print("rcpt options: %s\n" % kwargs["rcpt_options"])
        self._print_message_content(peer, data)
        print("------------ END MESSAGE ------------")


class PureProxy(SMTPServer):
    """Relays to the smarthost remoteaddr, in real time (libsmtpd's relay):
    each RCPT is the smarthost's answer, and 250 comes only once it took
    the message. Only clients in relay_networks (loopback by default) may
    relay. process_message is not called."""

    _engine = _smtpd.ENGINE_RELAY

    def __init__(self, *args, **kwargs):
        if kwargs.get("enable_SMTPUTF8") or (len(args) > 4 and args[4]):
            raise ValueError("%s does not support SMTPUTF8." % type(self).__name__)
        if type(self).process_message is not SMTPServer.process_message:
            raise TypeError("%s relays in C and never calls process_message; subclass"
                            " SMTPServer to handle messages in Python" % type(self).__name__)
        super().__init__(*args, **kwargs)


class MailmanProxy(PureProxy):
    """PureProxy that first asks Mailman 3's LMTP server (mailman_lmtp,
    default 127.0.0.1:8024) about each recipient: list mail goes to Mailman,
    the rest to the smarthost."""

    def __init__(self, *args, mailman_lmtp="127.0.0.1:8024", **kwargs):
        super().__init__(*args, mailman_lmtp=mailman_lmtp, **kwargs)


def loop(timeout=30.0, use_poll=False, map=None, count=None):
    """Run every open server on this thread (asyncore.loop's signature), the
    GIL released while it waits, until none is open, or for count rounds of
    at most timeout seconds. use_poll and map are accepted and not needed:
    one loop serves every server of the process."""
    _smtpd.loop(float(timeout), -1 if count is None else int(count))


def close_all(map=None, ignore_all=False):
    """Close every open server (asyncore.close_all's signature): see
    SMTPServer.close()."""
    for server in list(_servers):
        server.close()
