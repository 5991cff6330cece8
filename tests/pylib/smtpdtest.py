"""What the Python tests and the bench scripts share: one copy of each piece.

Used by tests/integration/smtpd_harness.py, tests/relay/relay_harness.py,
tests/hardening/hardlib.py, tests/mailman/mailman_fixture.py,
tests/delivery/deliverlib.py, bench/relay_load.py, bench/soak.py and
bench/maildir.py. Each of them finds this module by
putting this directory on sys.path relative to its own __file__:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "pylib"))   # (bench: "..", "tests", "pylib")

so that a test runs the same under CTest and by hand. Standard library only.

  paths, smtpd_bin, take_path_args, main   --smtpd PATH off the command line
  SLOW           how many times slower than a plain build smtpd runs here
  free_port, refused_port, wait_port, port_closed, wait_until, stop_process
  proc_*, raise_nofile, nofile_preexec     /proc readers, RLIMIT_NOFILE
  Collector      a pipe read on a thread into a buffer
  Smtpd          the program on 127.0.0.1:0, its port from "listening on"
  SmtpSink       Postfix's smtp-sink as an upstream
  Recorder       recorder.py (aiosmtpd) as an upstream that writes JSON lines
  read_journal   such a journal's lines, message data decoded
  ThreadedServer a hand-written server: one thread per connection
  RawClient      an SMTP client on a plain socket
  TestCase       servers and clients that are always cleaned up
"""

import base64
import json
import os
import shlex
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

PYLIB = os.path.dirname(os.path.abspath(__file__))

# The tests run under the system interpreter, whose Debian packages
# (python3-aiosmtpd) they use; smtp-sink and smtp-source are Postfix's.
SYSTEM_PYTHON = "/usr/bin/python3"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

# How many times slower than a plain build smtpd runs here: CI sets
# SMTPD_TEST_LATENCY to 5 under ASan and 10 under valgrind. Upper bounds on
# how long normal work may take are multiplied by it; sleeps are not.
SLOW = float(os.environ.get("SMTPD_TEST_LATENCY", "1"))

# What DebuggingServer prints around each message on standard output.
BEGIN = b"---------- MESSAGE FOLLOWS ----------\n"
END = b"------------ END MESSAGE ------------\n"


# ---------------------------------------------------------------- command line

# Paths of the programs under test: --NAME PATH on the command line (main),
# else the environment. A harness may add names (integration: "counter").
paths = {"smtpd": os.environ.get("SMTPD_BIN")}


def smtpd_bin():
    path = paths["smtpd"]
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("smtpd binary not given or not executable: %r "
                             "(pass --smtpd PATH or set SMTPD_BIN)" % path)
    return path


def smtpd_argv():
    """The command line that starts smtpd: the words of $SMTPD_WRAPPER (for
    example a valgrind command, see .ci/run) and then the binary."""
    return shlex.split(os.environ.get("SMTPD_WRAPPER", "")) + [smtpd_bin()]


def take_path_args(args, names=("smtpd",)):
    """Remove --NAME PATH / --NAME=PATH from args (a list) for each of names,
    keeping PATH in paths[NAME]; return the other arguments (for unittest)."""
    rest = []
    i = 0
    while i < len(args):
        a = args[i]
        for name in names:
            if a == "--" + name and i + 1 < len(args):
                paths[name] = args[i + 1]
                i += 2
                break
            if a.startswith("--%s=" % name):
                paths[name] = a.split("=", 1)[1]
                i += 1
                break
        else:
            rest.append(a)
            i += 1
    return rest


def main(names=("smtpd",)):
    """Take --smtpd PATH (and the other names) off the command line, then
    run the tests of the __main__ module."""
    unittest.main(argv=[sys.argv[0]] + take_path_args(sys.argv[1:], names), verbosity=2)


def need(path, package):
    """path, when it is an executable; a missing tool fails a test, never skips it."""
    if not os.access(path, os.X_OK):
        raise AssertionError("%s is missing (Debian package %s); the tests need it"
                             % (path, package))
    return path


# ---------------------------------------------------------------- ports, waiting, processes

def free_port():
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_REFUSING = []  # the sockets of refused_port(), held while the test runs


def refused_port():
    """A 127.0.0.1 port where every connect is refused until the process
    ends: bound but not listening, so no other test can take it meanwhile
    (a port of free_port() can be taken by then)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _REFUSING.append(s)
    return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    """Wait until something accepts on 127.0.0.1:port (connect and close).
    False after timeout seconds, or at once when proc has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def port_closed(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def wait_until(pred, timeout, interval=0.2):
    """Call pred() until it returns something true; return that, or None
    after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def stop_process(proc, sig=signal.SIGTERM, timeout=5):
    """Stop one process we started, by its own id: sig, then after timeout
    seconds SIGKILL. Returns False when it took the SIGKILL."""
    if proc is None or proc.poll() is not None:
        return True
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return False
    except ProcessLookupError:
        pass
    return True


# ---------------------------------------------------------------- /proc, limits

def proc_status(pid):
    """/proc/PID/status as a dict of str -> str."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def _proc_stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    # The command name may contain spaces and ')': fields start after the last ')'.
    return s[s.rindex(")") + 2:].split()


def proc_cpu_seconds(pid):
    """User + system CPU time of the process so far, in seconds."""
    fields = _proc_stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        return _proc_stat_fields(pid)[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


def proc_socket_count(pid):
    """Sockets the process holds open (listeners included)."""
    n = 0
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, name)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def pids_with_cmdline(needle):
    """Other processes whose command line contains needle (bytes)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if needle in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def nofile_under_hard(want):
    """min(want, this process's hard RLIMIT_NOFILE limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


def raise_nofile(want):
    """Raise this process's RLIMIT_NOFILE soft limit to min(want, hard).
    Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = nofile_under_hard(want)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_preexec(soft, hard=None):
    """A preexec_fn that sets the child's RLIMIT_NOFILE (without hard: the
    current hard limit, raised to soft if need be, which takes root)."""
    def fn():
        h = hard
        if h is None:
            h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            if h != resource.RLIM_INFINITY:
                h = max(h, soft)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, h))
    return fn


# ---------------------------------------------------------------- a pipe on a thread

class Collector:
    """Reads a pipe on a thread into a growing buffer (so the child never
    blocks on a full pipe); remembers when each chunk arrived (monotonic
    clock) so tests can time what was printed."""

    def __init__(self, pipe):
        self.buf = bytearray()
        self.times = []  # (offset after the chunk, monotonic time)
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self.thread.start()

    def _run(self, pipe):
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                chunk = b""
            now = time.monotonic()
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    break
                self.buf += chunk
                self.times.append((len(self.buf), now))
                self.cond.notify_all()
        pipe.close()

    def data(self):
        with self.cond:
            return bytes(self.buf)

    def time_of(self, offset):
        """When the byte at @offset had arrived (None: not yet)."""
        with self.cond:
            for end, t in self.times:
                if end > offset:
                    return t
        return None

    def wait_for(self, predicate, timeout):
        """Wait until predicate(bytes so far) is true, or the pipe is closed,
        or timeout seconds pass; return its last value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = predicate(bytes(self.buf))
                if r or self.closed:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return r
                self.cond.wait(min(left, 1.0))


# ---------------------------------------------------------------- the program

# The first "listening on ADDRESS:PORT" line names the port. Port 0 would be
# the address asked for, not a bound socket, so it never matches.
LISTENING = re.compile(rb"listening on (?:\[[0-9a-fA-F:.]+\]|[0-9.]+):([1-9][0-9]*)\n")
# The same for the --smtps listener. Tests give "--smtps 127.0.0.1:0" and read
# the port here: a port picked free beforehand may be taken by another test
# before smtpd binds it.
LISTENING_SMTPS = re.compile(rb"listening on 127\.0\.0\.1:([1-9][0-9]*) \(implicit TLS\)\n")


class Smtpd:
    """One running smtpd:

        smtpd [-n] [-c CLS] OPTIONS... LISTEN EXTRA...

    (EXTRA: a proxy's upstream). Standard error is collected (self.err),
    standard output too when stdout is PIPE (self.out). Use as a context
    manager or call close(). The class attributes are the defaults a
    harness may change in a subclass."""

    START_TIMEOUT = 10   # seconds to wait for the "listening on" line
    TERM_WAIT = 5        # seconds close() gives SIGTERM before SIGKILL
    STDERR_TAIL = None   # stderr_text(): only the last this many characters

    def __init__(self, *options, cls="DebuggingServer", listen="127.0.0.1:0", extra=(),
                 nosetuid=True, preexec_fn=None, stdout=subprocess.PIPE, term_wait=None):
        self.term_wait = self.TERM_WAIT if term_wait is None else term_wait
        self.argv = smtpd_argv()
        if nosetuid:
            self.argv.append("-n")
        if cls is not None:
            self.argv += ["-c", cls]
        self.argv += list(options)
        self.argv.append(listen)
        self.argv += list(extra)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=subprocess.PIPE, preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.out = Collector(self.proc.stdout) if stdout == subprocess.PIPE else None
        self.err = Collector(self.proc.stderr)
        self.port = None
        try:
            m = self.err.wait_for(LISTENING.search, self.START_TIMEOUT)
            if not m:
                raise AssertionError("smtpd did not report a listening socket within %ss; "
                                     "exit status %r; argv %r; stderr:\n%s"
                                     % (self.START_TIMEOUT, self.proc.poll(), self.argv,
                                        self.stderr_text()))
            self.port = int(m.group(1))
        except BaseException:
            self.close()
            raise

    def smtps_port(self):
        """The port of the "--smtps 127.0.0.1:0" listener, from the log."""
        return int(self.wait_stderr(LISTENING_SMTPS).group(1))

    # ---- output ----

    def stdout(self):
        return self.out.data() if self.out else b""

    def stderr(self):
        return self.err.data()

    def stderr_text(self):
        t = self.err.data().decode("utf-8", "backslashreplace")
        tail = self.STDERR_TAIL
        return t if tail is None or len(t) <= tail else "...\n" + t[-tail:]

    def wait_log(self, pattern, timeout=5):
        """Wait for a regex (bytes) on standard error: the match, or None."""
        rx = re.compile(pattern)
        return self.err.wait_for(rx.search, timeout)

    def wait_stderr(self, pattern, timeout=10):
        """Wait for a regex (bytes) on standard error; return the match, or
        fail."""
        m = self.wait_log(pattern, timeout)
        if not m:
            raise AssertionError("no %r on smtpd's stderr within %ss; stderr:\n%s"
                                 % (pattern, timeout, self.stderr_text()))
        return m

    # ---- stopping ----

    def alive(self):
        return self.proc.poll() is None and proc_alive(self.pid)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def terminate(self, timeout):
        """SIGTERM; return the exit status, or None if it still runs after
        timeout seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _join(self):
        for c in (self.out, self.err):
            if c:
                c.thread.join(5)

    def wait(self, timeout=10):
        """Wait for the program to exit; return its exit status.

        Fails (and kills it) when it does not exit in time."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError("smtpd did not exit within %ss; stderr:\n%s"
                                 % (timeout, self.stderr_text()))
        self._join()
        return rc

    def stop(self, timeout=10):
        """SIGTERM, then wait; return the exit status (negative: a signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self):
        """Stop the program whatever its state (for clean-ups): SIGTERM, then
        SIGKILL after term_wait seconds."""
        stop_process(self.proc, signal.SIGTERM, self.term_wait)
        self._join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- upstreams

class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1 with the given options.

    port: a fixed port (a restart), else a free one. dump_dir: write every
    delivered message to a file there (-d). tries: starts to attempt (a
    fixed port may still be held a moment after the last sink died).
    """

    def __init__(self, *options, port=None, dump_dir=None, backlog=100, tries=5):
        need(SMTP_SINK, "postfix")
        self.options = list(options)
        self.dump_dir = dump_dir
        last = None
        for _ in range(tries):
            self.port = port or free_port()
            argv = [SMTP_SINK]
            if os.geteuid() == 0:
                argv += ["-u", "nobody"]
            if dump_dir:
                os.makedirs(dump_dir, exist_ok=True)
                # smtp-sink writes as "nobody": the directory must be writable
                # and its (mkdtemp, 0700) parent passable.
                os.chmod(dump_dir, 0o777)
                os.chmod(os.path.dirname(os.path.abspath(dump_dir)), 0o711)
                argv += ["-d", os.path.join(dump_dir, "%Y%m%d%H%M%S.")]
            argv += self.options + ["127.0.0.1:%d" % self.port, str(backlog)]
            self.argv = argv
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.err = Collector(self.proc.stderr)
            if wait_port(self.port, 10, self.proc):
                return
            last = self.err.data().decode("utf-8", "replace")
            stop_process(self.proc)
            if port:  # a fixed port (restart): wait for it to be free again
                time.sleep(0.2)
        raise AssertionError("smtp-sink did not start: %r\n%s" % (self.argv, last))

    def messages(self):
        """The dumped messages (bytes), with smtp-sink's own header lines."""
        out = []
        if not self.dump_dir:
            return out
        for name in sorted(os.listdir(self.dump_dir)):
            with open(os.path.join(self.dump_dir, name), "rb") as f:
                out.append(f.read())
        return out

    def close(self, sig=signal.SIGTERM):
        stop_process(self.proc, sig)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_journal(path):
    """Every whole JSON line of a recording upstream's journal (none when it
    is not there yet), with "data" decoded from base64 to bytes."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")[:-1]  # the last one may be half-written
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        e = json.loads(line)
        if "data" in e:
            e["data"] = base64.b64decode(e["data"])
        out.append(e)
    return out


class Recorder:
    """recorder.py (aiosmtpd) in a subprocess on 127.0.0.1, appending one
    JSON line per event to a journal file (see recorder.py).

    options: recorder.py's own (--no-smtputf8). port: a fixed port (a
    restart), else a free one. journal: the file, else one in a temporary
    directory that cleanup() removes."""

    def __init__(self, *options, port=None, journal=None, start_timeout=15):
        need(SYSTEM_PYTHON, "python3-aiosmtpd")
        self.tmp = None
        if journal is None:
            self.tmp = tempfile.mkdtemp(prefix="smtpd-rec-")
            journal = os.path.join(self.tmp, "journal.jsonl")
        self.journal = journal
        last = None
        for _ in range(5):
            self.port = port or free_port()
            self.argv = [SYSTEM_PYTHON, "-B", os.path.join(PYLIB, "recorder.py"),
                         "--port", str(self.port), "--out", journal] + list(options)
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.out = Collector(self.proc.stdout)
            self.err = Collector(self.proc.stderr)
            if self.out.wait_for(lambda b: b"READY\n" in b, start_timeout):
                return
            last = self.err.data().decode("utf-8", "replace")
            stop_process(self.proc)
            if port:
                time.sleep(0.2)
        raise AssertionError("aiosmtpd recorder did not start: %r\n%s" % (self.argv, last))

    def events(self):
        return read_journal(self.journal)

    def messages(self):
        return [e for e in self.events() if e["event"] == "message"]

    def connections(self):
        return [e for e in self.events() if e["event"] == "connect"]

    def wait_messages(self, n, timeout=5):
        """The messages once there are n (all there are after timeout)."""
        wait_until(lambda: len(self.messages()) >= n, timeout, 0.02)
        return self.messages()

    def close(self, sig=signal.SIGTERM, timeout=5):
        stop_process(self.proc, sig, timeout)

    def cleanup(self):
        self.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class ThreadedServer:
    """A hand-written server on 127.0.0.1 (a free port): one thread accepts,
    one thread per connection runs serve(conn), which a subclass writes.
    close() stops accepting and drops the connections still open."""

    def __init__(self, backlog=50):
        self.lock = threading.Lock()
        self.connections = 0
        self.socks = []
        self.stopped = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(backlog)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def serve(self, conn):
        raise NotImplementedError

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.stopped:
                    conn.close()
                    return
                self.connections += 1
                self.socks.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.serve(conn)
        except (EOFError, OSError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        with self.lock:
            self.stopped = True
            socks, self.socks = self.socks, []
        try:
            self.listener.close()
        except OSError:
            pass
        # A blocked accept() holds the listener open: wake it with a
        # connection of our own.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- a client

class Disconnected(EOFError):
    """The server closed the connection before a whole reply."""


class RawClient:
    """An SMTP client on a plain socket: send bytes, read replies, a
    multi-line one whole. source: the local address to bind; nodelay: no
    Nagle delay on small writes."""

    ERRORS = "backslashreplace"  # how reply texts are decoded

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None, nodelay=False):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Disconnected("connection closed; unread: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self, timeout=None):
        """One reply: (code, [text of each line]) with the text as str."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        texts = []
        while True:
            line = self._line()
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b""):
                raise AssertionError("not an SMTP reply line: %r" % line)
            texts.append(line[4:].decode("utf-8", self.ERRORS))
            if line[3:4] != b"-":
                return int(line[:3]), texts

    def command(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed_by_peer(self, timeout=5):
        """True when the server closes the connection (and sends nothing
        more) within timeout."""
        self.sock.settimeout(timeout)
        try:
            extra = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if extra:
            raise AssertionError("unexpected data before close: %r" % (self.buf + extra))
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stuff(body):
    """Dot-stuff message bytes (RFC 5321 4.5.2) and end them with CRLF."""
    out = re.sub(rb"(?m)^\.", b"..", body)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


# ---------------------------------------------------------------- test cases

def quiet_close(x):
    try:
        x.close()
    except Exception:
        pass


class TestCase(unittest.TestCase):
    """Base class: start servers and clients that are cleaned up always.
    A harness names its own server_class and client_class."""

    maxDiff = 4000
    server_class = Smtpd
    client_class = RawClient

    def start(self, *options, **kw):
        srv = self.server_class(*options, **kw)
        self.addCleanup(srv.close)
        return srv

    def raw(self, port, **kw):
        c = self.client_class(port, **kw)
        self.addCleanup(c.close)
        return c
