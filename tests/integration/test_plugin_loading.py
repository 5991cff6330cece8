"""integ_plugin_loading: how `smtpd -c NAME.so` finds, checks and runs a plugin.

A name without '/' is looked up in the working directory (./NAME.so), never
in the library path; a path with '/' is used as given. Each way a plugin can
fail gives one line "smtpd: ..." on standard error and its exit status: 64
when it cannot be loaded or exports no init, 70 when its init fails or leaves
a handler the library refuses. start(), shutdown() and teardown() are called
when the server listens, at SIGTERM/SIGINT and after the event loop.

The test-only plugins are built from tests/plugins (passed as --plugins DIR):
tp_hooks.so records the calls it gets to a file; tp_bad_v1.so, tp_bad_v0.so,
tp_nosymbol.so, tp_undefined.so and tp_both.so are the failures.
"""

import functools
import os
import shutil
import signal
import smtplib
import socket
import tempfile
import time

from smtpd_harness import (EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE, SmtpdTestCase, counter_so, main,
                           plugin_path, run_smtpd, smtpdtest, xcommands_so)

SLOW = smtpdtest.SLOW


def in_dir(path):
    """A preexec_fn that starts smtpd in directory path."""
    return functools.partial(os.chdir, path)


class PluginTestCase(SmtpdTestCase):

    def tempdir(self):
        d = tempfile.mkdtemp(prefix="smtpd-plugin-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        return d

    def refused(self, args, status, cwd=None, env=None):
        """Run smtpd with args (before 127.0.0.1:0 ...: the whole command
        line after -n) that must make it exit; check the status, that
        stdout is empty and that stderr is one line; return that line."""
        r = run_smtpd(["-n"] + list(args), cwd=cwd, env=env)
        err = r.stderr.decode("utf-8", "backslashreplace")
        self.assertEqual(r.returncode, status, "smtpd %s: stderr %r" % (" ".join(args), err))
        self.assertEqual(r.stdout, b"")
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("smtpd: "), lines)
        return lines[0]

    def serves_xcommands(self, srv):
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        self.assertTrue(s.has_extn("xstate"), s.ehlo_resp)
        self.assertEqual(s.docmd("XDELAY", "0"), (250, b"2.0.0 Delayed OK"))
        self.assertEqual(s.quit()[0], 221)


class WorkingDirectoryTest(PluginTestCase):

    def test_bare_name_from_working_directory(self):
        examples = os.path.dirname(xcommands_so())
        srv = self.start(cls="xcommands.so", preexec_fn=in_dir(examples))
        self.serves_xcommands(srv)
        self.assertEqual(srv.stop(), 0, srv.stderr_text())

    def test_relative_path_with_slash(self):
        examples = os.path.dirname(xcommands_so())
        parent, sub = os.path.split(examples)
        srv = self.start(cls=os.path.join(sub, "xcommands.so"), preexec_fn=in_dir(parent))
        self.serves_xcommands(srv)
        # A path with '/' is used as given, not as ./PATH: "./sub/x.so" works too.
        srv2 = self.start(cls="./" + os.path.join(sub, "xcommands.so"), preexec_fn=in_dir(parent))
        self.serves_xcommands(srv2)

    def test_bare_name_not_searched_in_library_path(self):
        # dlopen() would search LD_LIBRARY_PATH for a bare name; smtpd must
        # look in the working directory only.
        elsewhere = self.tempdir()
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(xcommands_so()))
        line = self.refused(["-c", "xcommands.so", "127.0.0.1:0"], EX_USAGE, cwd=elsewhere,
                            env=env)
        self.assertEqual(line, "smtpd: cannot load ./xcommands.so: ./xcommands.so: cannot open "
                               "shared object file: No such file or directory")

    def test_older_interface_by_bare_name(self):
        # counter.so exports only smtpd_plugin_init(h, argc, argv).
        srv = self.start(cls="counter.so", preexec_fn=in_dir(os.path.dirname(counter_so())),
                         extra=["5"])
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        s.mail("s@example.com")
        s.rcpt("r@example.com")
        self.assertEqual(s.data(b"hi\r\n"), (250, b"2.0.0 OK message 1 (4 bytes)"))

    def test_xcommands_takes_no_arguments(self):
        examples = os.path.dirname(xcommands_so())
        line = self.refused(["-c", "xcommands.so", "127.0.0.1:0", "extra"], EX_SOFTWARE,
                            cwd=examples)
        self.assertEqual(line, "smtpd: ./xcommands.so: smtpd_plugin_init_v1 failed: "
                               "xcommands takes no arguments")
        line = self.refused(["-c", xcommands_so(), "127.0.0.1:0", "a", "b"], EX_SOFTWARE)
        self.assertEqual(line, "smtpd: %s: smtpd_plugin_init_v1 failed: "
                               "xcommands takes no arguments" % xcommands_so())


class LoadErrorsTest(PluginTestCase):

    def test_missing_file(self):
        empty = self.tempdir()
        line = self.refused(["-c", "missing.so", "127.0.0.1:0"], EX_USAGE, cwd=empty)
        self.assertEqual(line, "smtpd: cannot load ./missing.so: ./missing.so: cannot open "
                               "shared object file: No such file or directory")

    def test_not_a_shared_object(self):
        d = self.tempdir()
        with open(os.path.join(d, "garbage.so"), "w") as f:
            f.write("this is a text file, not an ELF shared object\n" * 10)
        line = self.refused(["-c", "garbage.so", "127.0.0.1:0"], EX_USAGE, cwd=d)
        self.assertRegex(line, r"^smtpd: cannot load \./garbage\.so: \./garbage\.so: \S.*$")
        # A directory named like a plugin.
        os.mkdir(os.path.join(d, "dir.so"))
        line = self.refused(["-c", os.path.join(d, "dir.so"), "127.0.0.1:0"], EX_USAGE)
        self.assertTrue(line.startswith("smtpd: cannot load %s: " % os.path.join(d, "dir.so")),
                        line)

    def test_undefined_symbol(self):
        path = plugin_path("tp_undefined")
        line = self.refused(["-c", path, "127.0.0.1:0"], EX_USAGE)
        self.assertTrue(line.startswith("smtpd: cannot load %s: " % path), line)
        self.assertTrue(line.endswith("undefined symbol: tp_no_such_function"), line)

    def test_no_init_symbol(self):
        path = plugin_path("tp_nosymbol")
        line = self.refused(["-c", path, "127.0.0.1:0"], EX_USAGE)
        self.assertEqual(line, "smtpd: %s exports neither smtpd_plugin_init_v1 nor "
                               "smtpd_plugin_init" % path)
        # Bare name: the message names ./NAME.so.
        line = self.refused(["-c", "tp_nosymbol.so", "127.0.0.1:0"], EX_USAGE,
                            cwd=os.path.dirname(path))
        self.assertEqual(line, "smtpd: ./tp_nosymbol.so exports neither smtpd_plugin_init_v1 "
                               "nor smtpd_plugin_init")

    def test_init_fails(self):
        v1 = plugin_path("tp_bad_v1")
        v0 = plugin_path("tp_bad_v0")
        for path, case, symbol, reason in (
                (v1, "fail", "smtpd_plugin_init_v1", "tp_bad_v1 refused on purpose"),
                (v1, "fail_silently", "smtpd_plugin_init_v1", "it gave no reason"),
                (v0, "fail", "smtpd_plugin_init", "it gave no reason")):
            with self.subTest(path=os.path.basename(path), case=case):
                line = self.refused(["-c", path, "127.0.0.1:0", case], EX_SOFTWARE)
                self.assertEqual(line, "smtpd: %s: %s failed: %s" % (path, symbol, reason))

    def test_handlers_smtpd_cannot_use(self):
        v1 = plugin_path("tp_bad_v1")
        cases = [
            (v1, "no_on_message", "on_message is NULL (every handler needs one)"),
            (v1, "null_fn", "commands[1] (XFOO): fn is NULL"),
            (v1, "bad_verb", "commands[0].verb \"X_FOO\" is not a verb (1-32 letters, digits "
                                 "or '-')"),
            (v1, "null_verb", "commands[0].verb is NULL"),
            (v1, "duplicate_verb", "commands[0] and commands[1] are both xfoo"),
            (v1, "bad_flags", "commands[0] (XFOO): unknown flags 0x8"),
            (v1, "exclusive_flags",
             "commands[0] (XFOO): NEED_MAIL and NO_TRANSACTION exclude each other"),
            (v1, "bad_ehlo",
             "commands[0] (XFOO): ehlo is empty, too long or has control characters"),
            (v1, "no_table", "n_commands is 2 but commands is NULL"),
        ]
        for path, case, reason in cases:
            with self.subTest(case=case):
                line = self.refused(["-c", path, "127.0.0.1:0", case], EX_SOFTWARE)
                self.assertEqual(line, "smtpd: %s: smtpd_plugin_init_v1 left a handler smtpd "
                                       "cannot use: %s" % (path, reason))
        # The older interface is checked the same way.
        v0 = plugin_path("tp_bad_v0")
        line = self.refused(["-c", v0, "127.0.0.1:0", "no_on_message"], EX_SOFTWARE)
        self.assertEqual(line, "smtpd: %s: smtpd_plugin_init left a handler smtpd cannot use: "
                               "on_message is NULL (every handler needs one)" % v0)

    def test_good_table_of_the_same_plugin(self):
        # The plugin that gave the failures above serves with a good table.
        srv = self.start(cls=plugin_path("tp_bad_v1"), extra=["ok"])
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        self.assertEqual(s.help(), b"2.0.0 Supported commands: EHLO HELO MAIL RCPT DATA RSET "
                                   b"NOOP QUIT VRFY BDAT XFOO XBAR")
        self.assertEqual(s.docmd("XBAR"), (250, b"2.0.0 OK"))  # no answer: 250 2.0.0

    def test_both_symbols_v1_wins(self):
        srv = self.start(cls=plugin_path("tp_both"))
        s = self.smtp(srv.port)
        s.ehlo("client.example.com")
        s.mail("s@example.com")
        s.rcpt("r@example.com")
        self.assertEqual(s.data(b"hi\r\n"), (250, b"2.0.0 v1 handler"))


class HooksTest(PluginTestCase):

    def setUp(self):
        self.record = os.path.join(self.tempdir(), "hooks.txt")

    def events(self):
        """The recorded calls: [(event, {key: value})]."""
        try:
            with open(self.record) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            words = line.split(" ")
            out.append((words[0], dict(w.split("=", 1) for w in words[1:])))
        return out

    def names(self):
        return [e for e, _ in self.events()]

    def wait_event(self, name, count=1):
        ok = smtpdtest.wait_until(lambda: self.names().count(name) >= count, 5 * SLOW, 0.02)
        self.assertTrue(ok, "no %d x %r in %r" % (count, name, self.events()))

    def test_start_shutdown_teardown(self):
        srv = self.start(cls=plugin_path("tp_hooks"), extra=[self.record])
        self.wait_event("start")
        (init, i), (start, st) = self.events()
        self.assertEqual((init, start), ("init", "start"))
        self.assertEqual(i, {"pid": str(srv.pid), "version": "1", "argc": "1", "log_level": "2"})
        # start: once the server listens, before any client; with its own arg.
        self.assertEqual(st, {"pid": str(srv.pid), "arg": "ok", "listeners": "1",
                              "address": "127.0.0.1:%d" % srv.port, "sessions": "0"})
        # The host's log sink is the program's, before it listens.
        err = srv.stderr()
        self.assertIn(b" info: tp_hooks: loaded\n", err)
        self.assertLess(err.index(b"tp_hooks: loaded"), err.index(b"listening on"))

        # SIGTERM during a transaction: shutdown at once, teardown only
        # after the event loop, which waits for the transaction.
        c = self.raw(srv.port)
        c.reply()
        c.command("EHLO client.example.com")
        self.assertEqual(c.command("MAIL FROM:<a@example.com>")[0], 250)
        srv.signal(signal.SIGTERM)
        self.wait_event("shutdown")
        time.sleep(0.2)
        self.assertTrue(srv.alive())
        self.assertEqual(self.names(), ["init", "start", "shutdown"])
        self.assertEqual(self.events()[2][1], {"pid": str(srv.pid), "arg": "ok"})
        self.assertEqual(c.command("RCPT TO:<b@example.com>")[0], 250)
        self.assertEqual(c.command("DATA")[0], 354)
        c.send(b"Subject: last\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 421)
        # Exits only because shutdown removed the plugin's hour-long timer.
        self.assertEqual(srv.wait(10 * SLOW), 0, srv.stderr_text())
        self.assertEqual(self.names(), ["init", "start", "shutdown", "teardown"])
        self.assertEqual(self.events()[3][1], {"pid": str(srv.pid), "arg": "ok"})

    def test_sigint_and_debug_log_level(self):
        srv = self.start("-d", cls=plugin_path("tp_hooks"), extra=[self.record])
        self.wait_event("start")
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        self.assertEqual(srv.wait(10 * SLOW), 0, srv.stderr_text())
        # No client: the loop ends at once (the plugin's timer is gone).
        self.assertLess(time.monotonic() - t0, 3 * SLOW)
        self.assertEqual(self.names(), ["init", "start", "shutdown", "teardown"])
        self.assertEqual(self.events()[0][1]["log_level"], "3")  # SMTPD_LOG_DEBUG with -d

    def test_init_failure_owes_no_teardown(self):
        path = plugin_path("tp_hooks")
        r = run_smtpd(["-n", "-c", path, "127.0.0.1:0", self.record, "init_fails"])
        self.assertEqual(r.returncode, EX_SOFTWARE, r.stderr)
        self.assertEqual(r.stderr.decode().splitlines()[-1],
                         "smtpd: %s: smtpd_plugin_init_v1 failed: tp_hooks: init_fails mode" % path)
        self.assertEqual(self.names(), ["init"])

    def test_refused_handler_gets_teardown(self):
        path = plugin_path("tp_hooks")
        r = run_smtpd(["-n", "-c", path, "127.0.0.1:0", self.record, "no_on_message"])
        self.assertEqual(r.returncode, EX_SOFTWARE, r.stderr)
        self.assertEqual(r.stderr.decode().splitlines()[-1],
                         "smtpd: %s: smtpd_plugin_init_v1 left a handler smtpd cannot use: "
                         "on_message is NULL (every handler needs one)" % path)
        # Init succeeded, so teardown is owed; the server never listened.
        self.assertEqual(self.names(), ["init", "teardown"])

    def test_address_in_use_teardown_without_start(self):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            r = run_smtpd(["-n", "-c", plugin_path("tp_hooks"), "127.0.0.1:%d" % port,
                           self.record])
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stderr)
        self.assertEqual(self.names(), ["init", "teardown"])

    def test_each_worker_starts_and_stops(self):
        srv = self.start("--workers", "2", cls=plugin_path("tp_hooks"), extra=[self.record])
        self.wait_event("start", 2)
        # init once, in the parent before the fork; start in each process.
        starts = [d for e, d in self.events() if e == "start"]
        pids = {d["pid"] for d in starts}
        self.assertEqual(len(pids), 2, starts)
        self.assertIn(str(srv.pid), pids)
        self.assertEqual([d["address"] for d in starts], ["127.0.0.1:%d" % srv.port] * 2)
        # Clients are served (by whichever worker the kernel picks).
        for _ in range(3):
            s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
            self.assertEqual(s.noop()[0], 250)
            s.quit()
        self.assertEqual(srv.stop(10 * SLOW), 0, srv.stderr_text())
        events = self.events()
        self.assertEqual([e for e, _ in events].count("init"), 1)
        self.assertEqual(events[0], ("init", events[0][1]))
        for pid in pids:
            mine = [e for e, d in events if d["pid"] == pid and e != "init"]
            self.assertEqual(mine, ["start", "shutdown", "teardown"], (pid, events))
        # The parent waits for its workers: its teardown is the last line.
        self.assertEqual(events[-1], ("teardown", {"pid": str(srv.pid), "arg": "ok"}))


if __name__ == "__main__":
    main()
