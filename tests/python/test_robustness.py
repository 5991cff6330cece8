"""python_robustness: what hostile or careless Python code does to a server.

  * process_message or an smtp_<VERB> method that raises SystemExit,
    KeyboardInterrupt or a bare BaseException, returns an object whose
    truth test raises, or push()es something that is not text: the client
    gets 451 at once (never the 600 s answer timeout), the traceback goes to
    the "smtpd" logger, the session and the server go on.
  * Four slow process_message calls do not hold up a channel's commands
    (their own threads).
  * The main thread ends while loop() serves on another thread: messages
    still reach process_message (no pool that refuses work at shutdown).
  * A signal handler that raises on the main thread, while loop() runs
    there under traffic: loop() raises it, and no client gets a 451 for it.
  * loop(timeout=inf) waits without spinning; NaN is a ValueError.
  * Bad arguments: a localaddr that is not (host, port), a hostname with
    spaces or controls.
"""

import logging
import os
import resource
import signal
import smtplib
import subprocess
import sys
import textwrap
import threading
import time

import pyharness
from pyharness import QUICK, SLOW, ServerTestCase, port_of, smtpd


def message(subject):
    return ("From: a@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n\r\nbody\r\n"
            % subject).encode()


class Raising(smtpd.SMTPServer):
    """process_message raises what the sender's local part names."""

    KINDS = {"sysexit": SystemExit, "kbint": KeyboardInterrupt, "base": BaseException}

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        kind = mailfrom.split("@")[0]
        if kind == "badbool":
            class Ambiguous:
                def __bool__(self):
                    raise RuntimeError("truth value is ambiguous")
            return Ambiguous()
        raise self.KINDS[kind]("raised on purpose")


class Channel(smtpd.SMTPChannel):
    def smtp_XEXIT(self, arg):
        raise SystemExit(3)

    def smtp_XINT(self, arg):
        raise KeyboardInterrupt

    def smtp_XPUSHINT(self, arg):
        self.push(123)

    def smtp_XPING(self, arg):
        self.push("250 pong")


class WithChannel(smtpd.SMTPServer):
    channel_class = Channel

    def process_message(self, *args, **kwargs):
        return None


class CapturedLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


class FailuresTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.log = CapturedLog()
        smtpd.logger.addHandler(self.log)
        self.addCleanup(smtpd.logger.removeHandler, self.log)

    def test_base_exceptions_in_process_message(self):
        server = self.serve(Raising)
        s = self.smtp(server)
        for kind in ("sysexit", "kbint", "base", "badbool"):
            with self.subTest(kind):
                t0 = time.monotonic()
                with self.assertRaises(smtplib.SMTPDataError) as cm:
                    s.sendmail(kind + "@example.com", ["b@example.com"], message(kind))
                self.assertEqual(cm.exception.smtp_code, 451)
                self.assertLess(time.monotonic() - t0, QUICK)
        self.assertEqual(s.noop()[0], 250)
        self.assertEqual(len(self.log.records), 4)
        self.assertTrue(all(r.exc_info for r in self.log.records))

    def test_base_exceptions_and_bad_pushes_in_commands(self):
        server = self.serve(WithChannel)
        c = self.raw(server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        for verb in ("XEXIT", "XINT", "XPUSHINT"):
            with self.subTest(verb):
                code, text = c.command(verb)
                self.assertEqual(code, 451, text)
        code, text = c.command("XPING")
        self.assertEqual((code, pyharness.plain(code, text)), (250, ["pong"]))
        self.assertEqual(len(self.log.records), 3)


class SlowMessages(smtpd.SMTPServer):
    channel_class = Channel

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def process_message(self, *args, **kwargs):
        self.entered.release()
        self.release.wait(30)


class PoolsTest(ServerTestCase):

    def test_slow_messages_leave_commands_alone(self):
        server = self.serve(SlowMessages)
        self.addCleanup(server.release.set)
        senders = []
        for i in range(smtpd.WORKERS):
            c = self.raw(server)
            self.assertEqual(c.command("EHLO c%d.example" % i)[0], 250)
            self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
            self.assertEqual(c.command("RCPT TO:<b@example.com>")[0], 250)
            self.assertEqual(c.command("DATA")[0], 354)
            c.send(b"Subject: slow\r\n\r\nx\r\n.\r\n")
            senders.append(c)
        for _ in senders:
            self.assertTrue(server.entered.acquire(timeout=QUICK))
        # Every message thread is busy; a command method still runs at once.
        c = self.raw(server)
        t0 = time.monotonic()
        code, text = c.command("XPING")
        self.assertEqual((code, pyharness.plain(code, text)), (250, ["pong"]))
        self.assertLess(time.monotonic() - t0, 1.5 * SLOW)
        server.release.set()
        for s in senders:
            self.assertEqual(s.reply()[0], 250)


def run_script(body, timeout=60):
    """Run a Python script in a child with our module; (returncode, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True,
                       text=True, timeout=timeout * SLOW, env=pyharness.child_env())
    return r.returncode, r.stdout, r.stderr


class ProcessTest(ServerTestCase):

    def test_main_thread_ends_while_loop_serves(self):
        code, out, err = run_script("""
            import smtpd, smtplib, threading, sys
            class S(smtpd.SMTPServer):
                def process_message(self, peer, mailfrom, rcpttos, data, **kw):
                    print("got", mailfrom, flush=True)
            server = S(("127.0.0.1", 0), None)
            port = server.socket.getsockname()[1]
            def client():
                # Sends once the main thread has ended (threading's shutdown waits for us).
                threading.main_thread().join()
                for who in ("first@example.com", "last@example.com"):
                    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                        print(who, s.sendmail(who, ["b@example.com"], b"Subject: x\\r\\n\\r\\nx\\r\\n"),
                              flush=True)
                server.close()  # from this thread: loop() returns, the process ends
            threading.Thread(target=smtpd.loop, kwargs={"timeout": 0.1}).start()
            threading.Thread(target=client).start()
            print("main thread done", flush=True)
        """)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.split("\n"), ["main thread done", "got first@example.com",
                                           "first@example.com {}", "got last@example.com",
                                           "last@example.com {}", ""], err)

    def test_signal_handler_raising_on_the_loop_thread(self):
        code, out, err = run_script("""
            import collections, os, signal, smtpd, socket, threading, time
            class S(smtpd.SMTPServer):
                def process_message(self, *args, **kwargs):
                    return None
            server = S(("127.0.0.1", 0), None)
            port = server.socket.getsockname()[1]
            codes = collections.Counter()
            stop = threading.Event()
            def flood():
                while not stop.is_set():
                    s = socket.create_connection(("127.0.0.1", port))
                    s.sendall(b"HELO x\\r\\n" + b"MAIL FROM:<a@b.c>\\r\\nRCPT TO:<d@e.f>\\r\\n"
                              b"DATA\\r\\nhi\\r\\n.\\r\\n" * 20 + b"QUIT\\r\\n")
                    for line in s.makefile("rb"):
                        codes[line[:3].decode()] += 1
                    s.close()
            def kick():
                time.sleep(0.3)  # after the main thread is in loop()
                while not stop.is_set():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    time.sleep(0.005)
            def handler(*args):
                raise KeyboardInterrupt
            for _ in range(2):
                threading.Thread(target=flood, daemon=True).start()
            threading.Thread(target=kick, daemon=True).start()
            signal.signal(signal.SIGUSR1, handler)
            raised = 0
            t0 = time.time()
            while time.time() - t0 < 3:
                try:
                    smtpd.loop(0.05)
                except KeyboardInterrupt:
                    raised += 1
            stop.set()
            print(raised, codes["250"], codes["451"], flush=True)
        """)
        self.assertEqual(code, 0, err)
        raised, ok, failed = (int(x) for x in out.split())
        self.assertGreater(raised, 10, out)
        self.assertGreater(ok, 100, out)
        self.assertEqual(failed, 0, "clients got 451 for the interrupts: " + out)


class LoopTest(ServerTestCase):

    def test_infinite_timeout_does_not_spin(self):
        server = self.make(pyharness.Recording)
        t = threading.Thread(target=smtpd.loop, kwargs={"timeout": float("inf")}, daemon=True)
        before = resource.getrusage(resource.RUSAGE_SELF)
        t.start()
        time.sleep(1.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        # A message still goes through; then close() ends the loop.
        with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
            self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], message("x")), {})
        server.close()
        t.join(QUICK)
        self.assertFalse(t.is_alive())
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        self.assertLess(cpu, 0.3, "loop(timeout=inf) used %.2f CPU s in 1 s idle" % cpu)

    def test_nan_timeout(self):
        self.make(pyharness.Recording)
        with self.assertRaises(ValueError):
            smtpd.loop(timeout=float("nan"))


class ArgumentsTest(ServerTestCase):

    def test_localaddr_must_be_host_and_port(self):
        for bad in ("127.0.0.1:0", ("127.0.0.1",), (0, 25), None):
            with self.subTest(bad=bad):
                with self.assertRaises(TypeError):
                    self.make(pyharness.Recording, localaddr=bad)

    def test_hostname_without_spaces_or_controls(self):
        for bad in ("evil\r\n250 injected", "two words", ""):
            with self.subTest(bad=bad):
                with self.assertRaises(ValueError):
                    self.make(pyharness.Recording, hostname=bad)
        server = self.serve(pyharness.Recording, hostname="mx.example.org")
        self.assertEqual(self.raw(server).greeting[0].split()[0], "mx.example.org")


class Slow(smtpd.SMTPServer):
    """process_message waits for release (or closes its own server first)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = []

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        self.entered.set()
        if mailfrom.startswith("self-close"):
            self.close()
        self.release.wait(30)
        self.done.append(mailfrom)
        return None


class CloseTest(ServerTestCase):
    """close() as the smtpd program's SIGTERM: a transaction in progress
    finishes, and its client gets process_message's answer."""

    def send_in_thread(self, server, sender):
        result = {}

        def send():
            try:
                with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
                    result["refused"] = s.sendmail(sender, ["b@example.com"], message("slow"))
            except smtplib.SMTPResponseException as e:
                # QUIT after the message: the closing server has said 421
                # already (libsmtpd's shutdown closes an idle session).
                result["quit"] = e.smtp_code
            except Exception as e:  # reported by the test
                result["error"] = e

        t = threading.Thread(target=send, daemon=True)
        t.start()
        return t, result

    def test_close_lets_the_transaction_finish(self):
        server = self.serve(Slow)
        idle = self.raw(server)  # an idle session: 421 at once
        t, result = self.send_in_thread(server, "a@example.com")
        self.assertTrue(server.entered.wait(QUICK))
        closer = threading.Thread(target=server.close, daemon=True)
        closer.start()
        self.assertEqual(idle.reply(timeout=QUICK)[0], 421)
        time.sleep(0.3)
        self.assertTrue(closer.is_alive(), "close() returned while a transaction was running")
        server.release.set()
        closer.join(QUICK)
        self.assertFalse(closer.is_alive())
        t.join(QUICK)
        self.assertEqual(result.get("refused"), {}, result)
        self.assertNotIn("error", result)
        self.assertEqual(server.done, ["a@example.com"])
        self.assertTrue(self.loop.join(QUICK), "loop() did not return once the server closed")

    def test_close_from_process_message(self):
        server = self.serve(Slow)
        server.release.set()
        t, result = self.send_in_thread(server, "self-close@example.com")
        t.join(QUICK)
        self.assertEqual(result.get("refused"), {}, result)
        self.assertNotIn("error", result)
        self.assertTrue(self.loop.join(QUICK))
        self.assertTrue(server._core.closed)

    def test_sigint_lets_the_transaction_finish(self):
        body = """
            import smtpd, sys, time
            class S(smtpd.SMTPServer):
                def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
                    print("in process_message", flush=True)
                    time.sleep(1.5)
                    print("done", flush=True)
        """
        pkg = os.path.join(self.tmpdir(), "slowpkg.py")
        with open(pkg, "w") as f:
            f.write(textwrap.dedent(body))
        p = pyharness.ModuleProcess("-n", "-c", "slowpkg.S",
                                    env=pyharness.child_env(extra_path=[os.path.dirname(pkg)]))
        self.addCleanup(p.close)
        result = {}

        def send():
            try:
                with smtplib.SMTP("127.0.0.1", p.port, timeout=QUICK) as s:
                    result["refused"] = s.sendmail("a@example.com", ["b@example.com"],
                                                   message("x"))
            except Exception as e:  # reported below
                result["error"] = e

        t = threading.Thread(target=send, daemon=True)
        t.start()
        self.assertTrue(p.out.wait_for(lambda b: b"in process_message" in b, QUICK))
        p.proc.send_signal(signal.SIGINT)
        t.join(QUICK)
        self.assertEqual(result.get("refused"), {}, result)
        self.assertEqual(p.proc.wait(QUICK), 0)
        self.assertIn(b"done", p.stdout())

    def tmpdir(self):
        import shutil
        import tempfile
        d = tempfile.mkdtemp(prefix="pysmtpd-close-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


if __name__ == "__main__":
    if pyharness.STDLIB:
        raise SystemExit("test_robustness tests our module; PYTHONPATH must lead to the build")
    import unittest
    unittest.main(verbosity=2)
