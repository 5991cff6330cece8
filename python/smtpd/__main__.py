"""python -m smtpd: the seed's command line, on libsmtpd.

    python -m smtpd [options] [localhost:localport [remotehost:remoteport]]

-n/--nosetuid, --user NAME, -V/--version, -c/--class NAME (a class of this
module, or package.module.Class), -s/--size BYTES, -u/--smtputf8,
-d/--debug, -h/--help, --decode-data, --hostname NAME, --relay-networks
CIDR,..., --mailman-lmtp HOST:PORT, --mailman-domains D,... The smtpd
program's other options (TLS, AUTH, delivery, workers) are the program's.
"""

import getopt
import os
import signal
import sys

import smtpd

USAGE = """\
Usage: python -m smtpd [options] [localhost:localport [remotehost:remoteport]]

  -n, --nosetuid          do not drop root privileges to "nobody" after binding
      --user NAME         drop root privileges to NAME, not "nobody"
  -V, --version           print the version and exit
  -c, --class NAME        PureProxy (the default), MailmanProxy,
                          DebuggingServer, or package.module.Class
  -s, --size BYTES        largest message accepted, advertised as SIZE; 0: no
                          limit (default 33554432)
  -u, --smtputf8          enable SMTPUTF8 (RFC 6531)
  -d, --debug             log the whole dialogue to standard error
  -h, --help              print this text and exit
      --decode-data       require UTF-8 message data; no 8BITMIME (not with -u)
      --hostname NAME     name in the greeting (default: this machine's FQDN)
      --relay-networks CIDR[,CIDR...]
                          clients that may relay (default 127.0.0.0/8,::1/128)
      --mailman-lmtp HOST:PORT
                          MailmanProxy: Mailman 3's LMTP server (default
                          127.0.0.1:8024)
      --mailman-domains D[,D...]
                          MailmanProxy: ask Mailman only about these domains

localhost:localport defaults to localhost:8025; remotehost:remoteport to
localhost:25. The smtpd program takes these and more (TLS, AUTH, delivery).
"""

LONG = ["nosetuid", "user=", "version", "class=", "size=", "smtputf8", "debug", "help",
        "decode-data", "hostname=", "relay-networks=", "mailman-lmtp=", "mailman-domains="]


def fail(msg):
    print("python -m smtpd: %s (see python -m smtpd --help)" % msg, file=sys.stderr)
    sys.exit(64)


def hostport(spec, what):
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        fail("bad %s address %r (host:port expected)" % (what, spec))
    return host.strip("[]"), int(port)


def find_class(name):
    if "." in name:
        modname, _, clsname = name.rpartition(".")
        try:
            mod = __import__(modname, fromlist=[""])
        except ImportError as e:
            fail("cannot import %s: %s" % (modname, e))
    else:
        mod, clsname = smtpd, name
    cls = getattr(mod, clsname, None)
    if cls is None:
        fail("no class %s in %s" % (clsname, mod.__name__))
    if not isinstance(cls, type) or not issubclass(cls, smtpd.SMTPServer):
        fail("%s is not an SMTPServer class" % name)
    if cls is smtpd.SMTPServer:
        # As the smtpd program: the seed started, then dropped every client
        # at its DATA (process_message raises NotImplementedError).
        fail("SMTPServer is the abstract base class and handles no message; "
             "use DebuggingServer, PureProxy, MailmanProxy or a subclass")
    return cls


def drop_privileges(user):
    import pwd
    try:
        pw = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except (KeyError, PermissionError) as e:
        print('python -m smtpd: cannot become "%s" (%s); try running with -n' % (user, e),
              file=sys.stderr)
        sys.exit(77)


def main(argv):
    try:
        opts, args = getopt.gnu_getopt(argv, "nVhc:s:du", LONG)
    except getopt.GetoptError as e:
        fail(str(e))
    setuid, user, classname, size = True, "nobody", "PureProxy", smtpd.DATA_SIZE_DEFAULT
    kwargs, extra = {}, {}
    for opt, arg in opts:
        if opt in ("-h", "--help"):
            print(USAGE, end="")
            return 0
        if opt in ("-V", "--version"):
            print(smtpd.__version__)
            return 0
        if opt in ("-n", "--nosetuid"):
            setuid = False
        elif opt == "--user":
            user = arg
        elif opt in ("-c", "--class"):
            classname = arg
        elif opt in ("-d", "--debug"):
            smtpd.DEBUGSTREAM = sys.stderr
        elif opt in ("-u", "--smtputf8"):
            kwargs["enable_SMTPUTF8"] = True
        elif opt == "--decode-data":
            kwargs["decode_data"] = True
        elif opt in ("-s", "--size"):
            if not arg.isdigit():
                fail("invalid size for -s: %r (bytes expected)" % arg)
            size = int(arg)
        else:
            extra[opt[2:].replace("-", "_")] = arg
    if len(args) > 2:
        fail("too many arguments: %s" % " ".join(args))
    local = hostport(args[0] if args else "localhost:8025", "local")
    remote = hostport(args[1] if len(args) > 1 else "localhost:25", "remote")
    cls = find_class(classname)
    if kwargs.get("enable_SMTPUTF8") and kwargs.get("decode_data"):
        fail("-u and --decode-data cannot be used together")
    try:
        server = cls(local, remote, size, **kwargs, **extra)
    except (OSError, ValueError, TypeError) as e:
        print("python -m smtpd: %s" % e, file=sys.stderr)
        return 69 if isinstance(e, OSError) else 64
    if setuid:
        drop_privileges(user)
    print("listening on %s:%d" % server.addr, file=sys.stderr, flush=True)
    # SIGTERM ends it as SIGINT does (exit 0), as it ends the smtpd program.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        smtpd.loop()
    except KeyboardInterrupt:
        # As the smtpd program: stop listening, let transactions in progress
        # finish (up to 30 s); a second SIGINT or SIGTERM ends it at once.
        server.close(wait=False)
        try:
            smtpd.loop()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
