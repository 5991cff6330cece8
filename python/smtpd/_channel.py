"""SMTPChannel: what a subclass sees of a session, and its smtp_<VERB> methods.

libsmtpd runs the dialogue; a channel object exists only for a server whose
channel_class defines or overrides smtp_<VERB> methods. Each such method
becomes a command (smtpd_handler.commands). It runs on a worker thread with
the session paused, its attributes set from the session first; what it
push()es is the reply, and super().smtp_<VERB>(arg) asks for the built-in
command instead (smtpd_run_builtin).
"""

DATA_SIZE_DEFAULT = 33554432

# The commands libsmtpd has built in: a channel's method of one of these
# names replaces it; SMTPChannel's own methods run the built-in one.
BUILTIN_VERBS = ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY",
                 "EXPN", "HELP")


class Conn:
    """The channel's conn: the addresses of its connection."""

    def __init__(self, peer, local):
        self._peer, self._local = peer, local

    def getpeername(self):
        return self._peer

    def getsockname(self):
        return self._local


class SMTPChannel:
    COMMAND = 0
    DATA = 1

    command_size_limit = 512

    def __init__(self, server, conn, addr, data_size_limit=DATA_SIZE_DEFAULT, map=None,
                 enable_SMTPUTF8=False, decode_data=False):
        if enable_SMTPUTF8 and decode_data:
            raise ValueError("decode_data and enable_SMTPUTF8 cannot"
                             " be set to True at the same time")
        self.smtp_server = server
        self.conn = conn
        self.addr = addr
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.peer = conn.getpeername()
        self.received_lines = []
        self.smtp_state = self.COMMAND
        self.seen_greeting = ""
        self.extended_smtp = False
        self.mailfrom = None
        self.rcpttos = []
        self.received_data = ""
        self.mail_options = []
        self.rcpt_options = []
        self.fqdn = ""
        self._verb = None
        self._replies = []
        self._builtin = None

    def push(self, msg):
        """Add a line to the reply of the command being run (str, or bytes
        in UTF-8)."""
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        if not isinstance(msg, str):
            raise TypeError("push() takes str or bytes, not %s" % type(msg).__name__)
        self._replies.append(str(msg))

    def _begin(self, verb, snapshot):
        (_peer, _local, self.seen_greeting, self.extended_smtp, self.mailfrom, self.rcpttos,
         self.smtp_state, self.fqdn) = snapshot
        self._verb, self._replies, self._builtin = verb, [], None

    def _run_builtin(self, verb, arg):
        if verb != self._verb:
            raise RuntimeError("SMTPChannel.smtp_%s runs the built-in %s only from smtp_%s itself"
                               " (super().smtp_%s(arg))" % (verb, verb, verb, verb))
        self._builtin = "" if arg is None else arg


def _builtin_method(verb):
    def method(self, arg):
        self._run_builtin(verb, arg)
    method.__name__ = method.__qualname__ = "smtp_" + verb
    method.__doc__ = "The built-in %s command, for super().smtp_%s(arg)." % (verb, verb)
    return method


for _verb in BUILTIN_VERBS:
    setattr(SMTPChannel, "smtp_" + _verb, _builtin_method(_verb))


def command_verbs(cls):
    """The verbs of cls's smtp_<VERB> methods that SMTPChannel lacks or has
    other ones for: the commands a server with this channel_class adds."""
    verbs = []
    for name in dir(cls):
        verb = name[5:]
        if (name.startswith("smtp_") and verb and verb.isalnum() and verb.isupper()
                and len(verb) <= 32 and callable(getattr(cls, name))
                and getattr(cls, name) is not getattr(SMTPChannel, name, None)):
            verbs.append(verb)
    return tuple(verbs)
