"""delivery_pipe: smtpd -c Pipe --pipe 'PROGRAM ARGS...'.

  - the program gets the message (LF line ends) on standard input, SENDER,
    RECIPIENTS, CLIENT_ADDRESS, HELO and SIZE in its environment, and
    {sender} and {recipient} expanded in its words (one word per
    recipient), quotes understood and no shell;
  - exit 0: 250; exit 75: 451 4.3.0; exit 67 with a message on standard
    error: 554 5.3.0 with its first line; 1 MB on standard error: the same,
    the program not blocked; killed by a signal: 451; still running after
    --pipe-timeout (and a child of it): 451, both killed; exits without
    reading a 1 MB message: 451; a program that does not exist: 451 and a
    log line;
  - --pipe-concurrency 2 with four messages at once: two programs at a
    time, the others wait, every session is answered, and a fifth client
    is served meanwhile;
  - examples/process_message.py, an old process_message() as a program:
    accepted mail is kept, a "550" reply refuses with 554 and its text.

    test_pipe.py --smtpd PATH
"""

import json
import os
import smtplib
import subprocess
import sys
import threading
import time

from deliverlib import HERE, SLOW, DeliveryCase, main, message, send, wait_until

PY = "/usr/bin/python3"
RECORD = r"""
import json, os, sys
env = {k: os.environ.get(k) for k in ("SENDER", "RECIPIENTS", "CLIENT_ADDRESS", "HELO", "SIZE")}
json.dump({"argv": sys.argv[1:], "env": env, "stdin": sys.stdin.buffer.read().decode("latin-1")},
          open(sys.argv[1], "w"))
"""


class Pipe(DeliveryCase):
    def script(self, text):
        d = self.tmpdir()
        path = os.path.join(d, "prog.py")
        with open(path, "w") as f:
            f.write(text)
        return d, path

    def pipe(self, command, *options):
        return self.start("--pipe", command, *options, cls="Pipe")

    def test_envelope_and_words(self):
        d, prog = self.script(RECORD)
        out = os.path.join(d, "out.json")
        srv = self.pipe("%s %s %s {sender} '--to={recipient}' \"two words\" a\\ b" % (PY, prog, out))
        data = message("piped", b"line one\r\nline two\r\n")
        code, text = send(srv.port, data, rcpts=("r1@example.com", "r2@example.com"))
        self.assertEqual(code, 250, text)
        got = json.load(open(out))
        self.assertEqual(got["argv"], [out, "a@example.com", "--to=r1@example.com",
                                       "--to=r2@example.com", "two words", "a b"])
        self.assertEqual(got["env"], {"SENDER": "a@example.com",
                                      "RECIPIENTS": "r1@example.com,r2@example.com",
                                      "CLIENT_ADDRESS": "127.0.0.1", "HELO": "client.example",
                                      "SIZE": str(len(data))})
        self.assertEqual(got["stdin"].encode("latin-1"), data.replace(b"\r\n", b"\n"))

    def expect(self, command, code, text_start, *options, data=None, log=None):
        srv = self.pipe(command, *options)
        t0 = time.monotonic()
        got_code, got_text = send(srv.port, data or message("status"))
        took = time.monotonic() - t0
        self.assertEqual((got_code, got_text[:len(text_start)]), (code, text_start), got_text)
        if log:
            srv.wait_stderr(log)
        # The server goes on.
        self.assertEqual(send(srv.port, data or message("again"))[0], code)
        return took

    def test_exit_statuses(self):
        self.expect("sh -c 'cat >/dev/null; exit 0'", 250, b"2.0.0")
        self.expect("sh -c 'exit 75'", 451, b"4.3.0", log=rb"exit status 75")
        self.expect("sh -c 'echo \"user unknown: bob\" >&2; echo second >&2; exit 67'",
                    554, b"5.3.0 user unknown: bob")
        self.expect("sh -c 'exit 3'", 554, b"5.3.0 Error: the delivery program failed "
                    b"(exit status 3)")
        self.expect("sh -c 'kill -9 $$'", 451, b"4.3.0", log=rb"killed by signal 9")
        self.expect("/nonexistent/program", 451, b"4.3.0",
                    log=rb"cannot run /nonexistent/program")

    def test_big_stderr(self):
        _, prog = self.script("import sys\nsys.stdin.read()\n"
                              "sys.stderr.write('first line\\n' + 'x' * 1000000)\nsys.exit(1)\n")
        took = self.expect("%s %s" % (PY, prog), 554, b"5.3.0 first line")
        self.assertLess(took, 10 * SLOW)

    def test_timeout_kills_the_group(self):
        took = self.expect("sh -c 'sleep 37.25 & sleep 37.5'", 451, b"4.3.0",
                           "--pipe-timeout", "1", log=rb"killed after 1 s")
        self.assertLess(took, 5 * SLOW)
        # The background child was killed with its group (it may take a
        # moment to be gone, reaped by init).
        self.assertTrue(wait_until(lambda: subprocess.run(
            ["pgrep", "-f", "^sleep 37.25"], capture_output=True).returncode == 1, 5))

    def test_does_not_read(self):
        data = message("big", (b"z" * 98 + b"\r\n") * 10000)
        self.expect("sleep 1", 451, b"4.3.0", data=data, log=rb"without reading")

    def test_concurrency(self):
        d = self.tmpdir()
        log = os.path.join(d, "log")
        srv = self.pipe("sh -c 'cat >/dev/null; echo start $(date +%%s.%%N) >> %s; sleep 2; "
                        "echo end $(date +%%s.%%N) >> %s'" % (log, log),
                        "--pipe-concurrency", "2")
        codes = []
        threads = [threading.Thread(target=lambda: codes.append(send(srv.port, message("c"))[0]))
                   for _ in range(4)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(0.3)
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
            t1 = time.monotonic()
            self.assertEqual(c.noop()[0], 250)
            self.assertLess(time.monotonic() - t1, 0.5 * SLOW)
        for t in threads:
            t.join(60)
        self.assertEqual(codes, [250] * 4)
        self.assertGreaterEqual(time.monotonic() - t0, 4.0)
        events = sorted((float(t), kind) for kind, t in
                        (line.split() for line in open(log).read().splitlines()))
        running = peak = 0
        for _, kind in events:
            running += 1 if kind == "start" else -1
            peak = max(peak, running)
        self.assertEqual(peak, 2)

    def test_process_message_example(self):
        d = self.tmpdir()
        keep = os.path.join(d, "kept")
        example = os.path.join(HERE, "..", "..", "examples", "process_message.py")
        os.environ["KEEP"] = keep
        self.addCleanup(os.environ.pop, "KEEP")
        srv = self.pipe("%s %s" % (PY, example))
        self.assertEqual(send(srv.port, message("ok"))[0], 250)
        code, text = send(srv.port, message("no"), rcpts=("x@blocked.example",))
        self.assertEqual((code, text), (554, b"5.3.0 recipient blocked here"))
        self.assertEqual(open(keep, "rb").read().count(b"Subject: ok\n"), 1)
        self.assertNotIn(b"Subject: no", open(keep, "rb").read())


if __name__ == "__main__":
    main()
