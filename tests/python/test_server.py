"""python_server: the Python module smtpd's SMTPServer, on the C engine.

  * The module's names, SMTPChannel's states, the constructor's arguments
    (ValueError for SMTPUTF8 with decode_data), binding at construction.
  * process_message: peer, mailfrom, rcpttos, data (bytes with CRLF line
    ends, dot-unstuffed, ending in CRLF; str with decode_data) and kwargs
    (mail_options upper-cased, rcpt_options).
  * Its answer: None is 250; a reply string is sent as it is (smtplib sees
    its code); a multi-line one too; an invalid one, or an exception, is 451
    and the server goes on.
  * SIZE (EHLO, 552), SMTPUTF8 (EHLO, a UTF-8 envelope), 8BITMIME.
  * process_message on worker threads: a slow one does not stall other
    clients; 20 clients at once, every message exactly once.
  * loop() returns once every server is closed (close(), close_all()).
"""

import collections
import smtplib
import socket
import threading
import time
import uuid

import pyharness
from pyharness import QUICK, SLOW, Recording, ServerTestCase, port_of, smtpd


def message(subject="hello", body="Hi there.\r\n", extra=""):
    return ("From: a@example.com\r\nTo: b@example.com\r\nSubject: %s\r\n%s\r\n%s"
            % (subject, extra, body)).encode()


class ModuleTest(ServerTestCase):

    def test_names(self):
        for name in ("SMTPServer", "DebuggingServer", "PureProxy", "MailmanProxy",
                     "SMTPChannel", "DEBUGSTREAM", "__version__", "DATA_SIZE_DEFAULT",
                     "loop", "close_all"):
            self.assertTrue(hasattr(smtpd, name), "smtpd.%s is missing (%s)"
                            % (name, pyharness.describe_module()))
        self.assertEqual(smtpd.DATA_SIZE_DEFAULT, 33554432)
        self.assertEqual(smtpd.SMTPChannel.COMMAND, 0)
        self.assertEqual(smtpd.SMTPChannel.DATA, 1)
        self.assertIsInstance(smtpd.__version__, str)
        self.assertTrue(smtpd.__version__)
        self.assertTrue(callable(smtpd.loop))
        self.assertTrue(callable(smtpd.close_all))
        self.assertTrue(callable(getattr(smtpd.DEBUGSTREAM, "write", None)))
        for cls in ("DebuggingServer", "PureProxy", "MailmanProxy"):
            self.assertTrue(issubclass(getattr(smtpd, cls), smtpd.SMTPServer), cls)
        self.assertIs(smtpd.SMTPServer.channel_class, smtpd.SMTPChannel)

    def test_smtputf8_with_decode_data_is_a_value_error(self):
        with self.assertRaises(ValueError):
            smtpd.SMTPServer(("127.0.0.1", 0), None, enable_SMTPUTF8=True, decode_data=True)

    def test_address_in_use(self):
        server = self.make(Recording)
        with self.assertRaises(OSError):
            other = Recording(("127.0.0.1", port_of(server)), None)
            other.close()

    def test_binds_and_listens_at_construction(self):
        server = self.make(Recording)
        host, port = server.socket.getsockname()[:2]
        self.assertEqual(host, "127.0.0.1")
        self.assertGreater(port, 0)
        # Listening already: the connection waits in the backlog until the
        # loop runs, then gets its greeting.
        c = pyharness.RawClient(port, timeout=QUICK)
        self.addCleanup(c.close)
        self.start_loop()
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        self.assertEqual(c.command("QUIT")[0], 221)


class LoopTest(ServerTestCase):

    def test_loop_returns_when_the_server_is_closed(self):
        server = self.serve(Recording)
        port = port_of(server)
        s = self.smtp(server)
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], message()), {})
        s.quit()
        server.close()
        self.assertTrue(self.loop.join(5 * SLOW), "loop() still runs after close()")
        self.assertIsNone(self.loop.error)
        self.assertTrue(pyharness.smtpdtest.port_closed(port), "port still accepts after close()")

    def test_loop_returns_with_a_client_still_connected(self):
        server = self.serve(Recording)
        c = self.raw(server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        server.close()
        self.assertTrue(self.loop.join(5 * SLOW),
                        "loop() still runs after close() while a client is connected")

    def test_close_all_closes_every_server(self):
        a = self.make(Recording)
        b = self.make(Recording)
        self.start_loop()
        for server in (a, b):
            c = self.raw(server)
            self.assertEqual(c.command("QUIT")[0], 221)
        ports = [port_of(a), port_of(b)]
        pyharness.close_all()
        self.assertTrue(self.loop.join(5 * SLOW), "loop() still runs after close_all()")
        for port in ports:
            self.assertTrue(pyharness.smtpdtest.port_closed(port))

    def test_loop_without_servers_returns(self):
        t = pyharness.LoopThread()
        self.assertTrue(t.join(5 * SLOW), "loop() with no server open did not return")
        self.assertIsNone(t.error)

    def test_loop_again_after_a_close(self):
        # A test suite starts and stops a server per test.
        for i in range(3):
            server = self.serve(Recording)
            s = self.smtp(server)
            self.assertEqual(s.sendmail("a@example.com", ["b@example.com"],
                                        message("round %d" % i)), {})
            s.quit()
            self.assertEqual(len(server.wait_calls(1)), 1)
            self.stop_loop()
            self.loop = None
            self.servers = []


class ProcessMessageTest(ServerTestCase):

    def test_arguments(self):
        server = self.serve(Recording)
        s = self.smtp(server)
        msg = message(body="line one\r\n.leading dot\r\n..two dots\r\nlast\r\n")
        self.assertEqual(s.sendmail("sender@example.com",
                                    ["one@example.com", "two@example.net"], msg), {})
        client_addr = s.sock.getsockname()[:2]
        (call,) = server.wait_calls(1)
        self.assertIsInstance(call["peer"], tuple)
        self.assertEqual(call["peer"][:2], client_addr)
        self.assertEqual(call["mailfrom"], "sender@example.com")
        self.assertIsInstance(call["mailfrom"], str)
        self.assertEqual(call["rcpttos"], ["one@example.com", "two@example.net"])
        self.assertIsInstance(call["data"], bytes)
        # CRLF line ends kept, dots unstuffed, the last line end there.
        self.assertEqual(call["data"], msg)
        self.assertTrue(call["data"].endswith(b"last\r\n"))
        self.assertEqual(call["kwargs"], {"mail_options": ["SIZE=%d" % len(msg)],
                                          "rcpt_options": []})

    def test_data_without_final_line_end_gets_one(self):
        server = self.serve(Recording)
        s = self.smtp(server)
        # smtplib adds the CRLF before the final dot itself.
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"],
                                    b"Subject: x\r\n\r\nno line end"), {})
        (call,) = server.wait_calls(1)
        self.assertEqual(call["data"], b"Subject: x\r\n\r\nno line end\r\n")

    def test_null_reverse_path(self):
        server = self.serve(Recording)
        s = self.smtp(server)
        self.assertEqual(s.sendmail("", ["postmaster@example.com"], message("bounce")), {})
        (call,) = server.wait_calls(1)
        self.assertEqual(call["mailfrom"], "")
        self.assertEqual(call["rcpttos"], ["postmaster@example.com"])

    def test_mail_options_upper_cased(self):
        server = self.serve(Recording)
        c = self.raw(server)
        code, lines = c.command("EHLO client.example.org")
        self.assertEqual(code, 250)
        self.assertIn("8BITMIME", lines)
        data = "Subject: 8 bit\r\n\r\nGr\u00fc\u00dfe\r\n".encode("utf-8")
        code, text = self.raw_transaction(c, data, mail_params=" body=8bitmime size=%d" % len(data))
        self.assertEqual(code, 250, text)
        (call,) = server.wait_calls(1)
        self.assertEqual(call["kwargs"], {"mail_options": ["BODY=8BITMIME", "SIZE=%d" % len(data)],
                                          "rcpt_options": []})
        self.assertEqual(call["data"], data)

    def test_several_messages_on_one_connection(self):
        server = self.serve(Recording)
        s = self.smtp(server)
        for i in range(5):
            self.assertEqual(s.sendmail("s%d@example.com" % i, ["r%d@example.com" % i],
                                        message("number %d" % i)), {})
        s.rset()
        self.assertEqual(s.sendmail("last@example.com", ["r@example.com"], message("last")), {})
        s.quit()
        calls = server.wait_calls(6)
        self.assertEqual([c["mailfrom"] for c in calls],
                         ["s%d@example.com" % i for i in range(5)] + ["last@example.com"])
        self.assertEqual([c["rcpttos"] for c in calls],
                         [["r%d@example.com" % i] for i in range(5)] + [["r@example.com"]])
        self.assertEqual(calls[3]["data"], message("number 3"))

    def test_decode_data(self):
        server = self.serve(Recording, decode_data=True)
        c = self.raw(server)
        code, lines = c.command("EHLO client.example.org")
        self.assertEqual(code, 250)
        self.assertNotIn("8BITMIME", lines)
        data = "Subject: text\r\n\r\nGr\u00fc\u00dfe\r\n.dot\r\n".encode("utf-8")
        code, text = self.raw_transaction(c, data)
        self.assertEqual(code, 250, text)
        (call,) = server.wait_calls(1)
        self.assertIsInstance(call["data"], str)
        self.assertEqual(call["data"], "Subject: text\r\n\r\nGr\u00fc\u00dfe\r\n.dot\r\n")
        self.assertEqual(call["kwargs"], {})

    def test_runs_off_the_loop_thread(self):
        server = self.serve(Recording)
        s = self.smtp(server)
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], message()), {})
        (call,) = server.wait_calls(1)
        self.assertIsNot(call["thread"], self.loop.thread)
        self.assertIsNot(call["thread"], threading.main_thread())


class Answering(Recording):
    """Answers with what the Subject asks for: 'reply: TEXT' (\\n in TEXT
    as CRLF), 'raise', or 250."""

    def answer(self, call):
        data = call["data"]
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        subject = [l for l in data.splitlines() if l.startswith("Subject: ")][0][9:]
        if subject == "raise":
            raise RuntimeError("process_message failed on purpose")
        if subject.startswith("reply: "):
            return subject[7:].replace("\\n", "\r\n")
        return None


class AnswerTest(ServerTestCase):

    def send_and_fail(self, s, subject):
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            s.sendmail("a@example.com", ["b@example.com"], message(subject))
        return cm.exception.smtp_code, cm.exception.smtp_error

    def test_reply_string_is_sent(self):
        server = self.serve(Answering)
        s = self.smtp(server)
        self.assertEqual(self.send_and_fail(s, "reply: 550 5.1.1 No such user"),
                         (550, b"5.1.1 No such user"))
        code, text = self.send_and_fail(s, "reply: 452 Try later")
        self.assertEqual((code, pyharness.plain(code, text)), (452, b"Try later"))
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], message("fine")), {})
        code, text = s.noop()
        self.assertEqual(code, 250)
        self.assertEqual(len(server.wait_calls(3)), 3)

    def test_custom_250(self):
        server = self.serve(Answering)
        c = self.raw(server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        self.assertEqual(self.raw_transaction(c, message("reply: 250 2.0.0 queued as 42")),
                         (250, ["2.0.0 queued as 42"]))

    def test_multi_line_reply(self):
        server = self.serve(Answering)
        c = self.raw(server)
        self.assertEqual(c.command("EHLO client.example.org")[0], 250)
        code, lines = self.raw_transaction(c, message("reply: 250-first\\n250 second"))
        self.assertEqual((code, pyharness.plain(code, lines)), (250, ["first", "second"]))
        # The session goes on in step.
        self.assertEqual(c.command("NOOP")[0], 250)
        code, lines = self.raw_transaction(c, message("reply: 554-no\\n554 never"))
        self.assertEqual((code, pyharness.plain(code, lines)), (554, ["no", "never"]))
        # Its own enhanced status code on every line: sent as it is.
        self.assertEqual(self.raw_transaction(c, message("reply: 550-5.1.1 a\\n550 5.1.1 b")),
                         (550, ["5.1.1 a", "5.1.1 b"]))
        self.assertEqual(c.command("QUIT")[0], 221)

    def test_invalid_reply_string_is_451(self):
        server = self.serve(Answering)
        s = self.smtp(server)
        for bad in ("hello", "600 x", "250-a\\n550 b", "25 short"):
            code, text = self.send_and_fail(s, "reply: " + bad)
            self.assertEqual(code, 451, "process_message returned %r: client got %r %r"
                             % (bad, code, text))
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], message("fine")), {})

    def test_exception_is_451_and_the_server_goes_on(self):
        server = self.serve(Answering)
        s = self.smtp(server)
        code, text = self.send_and_fail(s, "raise")
        self.assertEqual(code, 451)
        self.assertTrue(text.startswith(b"4.3.0"), text)
        # The same session goes on...
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], message("after")), {})
        s.quit()
        # ...and so does the server.
        s2 = self.smtp(server)
        self.assertEqual(s2.sendmail("a@example.com", ["b@example.com"], message("next")), {})
        s2.quit()
        self.assertEqual(len(server.wait_calls(3)), 3)


class ExtensionTest(ServerTestCase):

    def ehlo(self, server):
        c = self.raw(server)
        code, lines = c.command("EHLO client.example.org")
        self.assertEqual(code, 250, lines)
        return c, lines[1:]

    def test_default_size(self):
        server = self.serve(Recording)
        c, ext = self.ehlo(server)
        self.assertIn("SIZE 33554432", ext)
        self.assertNotIn("SMTPUTF8", ext)

    def test_size_limit(self):
        server = self.serve(Recording, data_size_limit=1000)
        c, ext = self.ehlo(server)
        self.assertIn("SIZE 1000", ext)
        small = message(body="x" * 500 + "\r\n")
        big = message(body=("y" * 70 + "\r\n") * 30)
        self.assertGreater(len(big), 1000)
        # Declared too big: 552 at MAIL (smtplib sends SIZE=).
        s = self.smtp(server)
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            s.sendmail("a@example.com", ["b@example.com"], big)
        self.assertEqual(cm.exception.smtp_code, 552)
        s.rset()
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], small), {})
        # Not declared: 552 after the data.
        code, text = self.raw_transaction(c, big)
        self.assertEqual(code, 552, text)
        server.wait_calls(1)
        time.sleep(0.2)
        self.assertEqual([c["data"] for c in server.calls], [small])

    def test_session_goes_on_after_552(self):
        server = self.serve(Recording, data_size_limit=1000)
        c, ext = self.ehlo(server)
        code, text = self.raw_transaction(c, message(body="z" * 2000 + "\r\n"))
        self.assertEqual(code, 552, text)
        self.assertEqual(c.command("NOOP")[0], 250)
        code, text = self.raw_transaction(c, message("after"))
        self.assertEqual(code, 250, text)
        (call,) = server.wait_calls(1)
        self.assertEqual(call["data"], message("after"))

    def test_smtputf8(self):
        server = self.serve(Recording, enable_SMTPUTF8=True)
        c, ext = self.ehlo(server)
        self.assertIn("SMTPUTF8", ext)
        self.assertIn("8BITMIME", ext)
        sender, rcpts = "j\u00f6rg@ex\u00e4mple.com", ["\u00f1o\u00f1o@\u4f8b\u3048.jp",
                                                          "plain@example.com"]
        data = "Subject: \u2603\r\n\r\nGr\u00fc\u00dfe\r\n".encode("utf-8")
        s = self.smtp(server)
        self.assertEqual(s.sendmail(sender, rcpts, data, mail_options=["SMTPUTF8"]), {})
        (call,) = server.wait_calls(1)
        self.assertEqual(call["mailfrom"], sender)
        self.assertEqual(call["rcpttos"], rcpts)
        self.assertEqual(call["data"], data)
        self.assertIn("SMTPUTF8", call["kwargs"]["mail_options"])

    def test_smtputf8_not_enabled(self):
        server = self.serve(Recording)
        c, ext = self.ehlo(server)
        self.assertNotIn("SMTPUTF8", ext)
        code, text = c.command("MAIL FROM:<a@example.com> SMTPUTF8")
        self.assertGreaterEqual(code, 500, text)
        self.assertLess(code, 600, text)


class SlowWorker(Recording):
    """process_message for a 'slow@' recipient waits (3 s at most) until
    the test lets it go."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.entered = threading.Event()
        self.release = threading.Event()

    def answer(self, call):
        if call["rcpttos"] == ["slow@example.com"]:
            self.entered.set()
            self.release.wait(3)
        return None


class ConcurrencyTest(ServerTestCase):

    def test_slow_process_message_does_not_stall_others(self):
        server = self.serve(SlowWorker)
        result = {}

        def slow():
            try:
                with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
                    result["slow"] = s.sendmail("a@example.com", ["slow@example.com"],
                                                message("slow"))
            except Exception as e:  # reported below
                result["slow"] = e

        t = threading.Thread(target=slow, daemon=True)
        t.start()
        try:
            self.assertTrue(server.entered.wait(QUICK), "the slow message never arrived")
            start = time.monotonic()
            with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
                self.assertEqual(s.sendmail("b@example.com", ["fast@example.com"],
                                            message("fast")), {})
            took = time.monotonic() - start
            self.assertFalse(server.release.is_set())
            self.assertLess(took, 1.5 * SLOW,
                            "another client's transaction took %.2fs while process_message "
                            "was busy with a slow one" % took)
        finally:
            server.release.set()
            t.join(QUICK)
        self.assertEqual(result.get("slow"), {})
        calls = server.wait_calls(2)
        self.assertEqual([c["rcpttos"] for c in calls],
                         [["slow@example.com"], ["fast@example.com"]])

    def test_four_at_once(self):
        # The worker pool has 4 threads: 4 calls can wait for each other.
        barrier = threading.Barrier(4, timeout=5 * SLOW)

        class Meeting(Recording):
            def answer(self, call):
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    return "451 4.3.0 not 4 at once"
                return None

        server = self.serve(Meeting)
        results = [None] * 4

        def send(i):
            try:
                with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
                    results[i] = s.sendmail("a@example.com", ["r%d@example.com" % i],
                                            message("n%d" % i))
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(QUICK)
        self.assertEqual(results, [{}] * 4)

    def test_twenty_clients_at_once(self):
        class Steady(Recording):
            def answer(self, call):
                time.sleep(0.01)
                return None

        server = self.serve(Steady)
        n, per_client = 20, 3
        start = threading.Barrier(n, timeout=QUICK)
        errors = []

        def client(i):
            try:
                start.wait()
                with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
                    for j in range(per_client):
                        tag = "%d-%d-%s" % (i, j, uuid.uuid4().hex)
                        refused = s.sendmail("c%d@example.com" % i, ["r%d@example.com" % j],
                                             message(tag))
                        if refused:
                            errors.append((i, j, refused))
            except Exception as e:
                errors.append((i, e))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30 * SLOW)
        self.assertEqual(errors, [])
        calls = server.wait_calls(n * per_client)
        time.sleep(0.2)  # nothing more may come
        self.assertEqual(len(server.calls), n * per_client)
        subjects = collections.Counter()
        for c in server.calls:
            subject = [l for l in c["data"].split(b"\r\n") if l.startswith(b"Subject: ")][0]
            i, j, _ = subject[9:].decode().split("-")
            self.assertEqual(c["mailfrom"], "c%s@example.com" % i)
            self.assertEqual(c["rcpttos"], ["r%s@example.com" % j])
            subjects[subject] += 1
        self.assertEqual(len(subjects), n * per_client)
        self.assertEqual(set(subjects.values()), {1})


class DebuggingOutputTest(ServerTestCase):

    def test_printed_through_sys_stdout(self):
        # As the seed's print(): contextlib.redirect_stdout (and pytest's
        # capsys) see it, set after the server was made; UTF-8 stays text.
        import contextlib
        import io
        server = self.serve(smtpd.DebuggingServer)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            with smtplib.SMTP("127.0.0.1", port_of(server), timeout=QUICK) as s:
                s.sendmail("a@example.com", ["b@example.com"],
                           "Subject: caf\u00e9\r\n\r\nline \u00e9\r\n".encode())
            self.assertTrue(pyharness.wait_until(lambda: "END MESSAGE" in out.getvalue(), QUICK))
        text = out.getvalue()
        self.assertIn("---------- MESSAGE FOLLOWS ----------\n", text)
        self.assertIn("Subject: caf\u00e9\n", text)
        self.assertIn("X-Peer: 127.0.0.1\n", text)
        self.assertIn("line \u00e9\n", text)


if __name__ == "__main__":
    pyharness.main()
