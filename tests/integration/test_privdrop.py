"""integ_privdrop: without -n, smtpd run by root becomes "nobody" after binding."""

import os
import pwd

from smtpd_harness import EX_NOPERM, SmtpdTestCase, main, run_smtpd


def proc_ids(pid):
    """Uid, Gid (each real, effective, saved, filesystem) and Groups of a process."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                fields[key] = [int(v) for v in value.split()]
    return fields


class PrivdropTest(SmtpdTestCase):

    def setUp(self):
        self.assertEqual(os.geteuid(), 0, "these tests must run as root")
        self.nobody = pwd.getpwnam("nobody")

    def test_drops_to_nobody_and_serves(self):
        srv = self.start(nosetuid=False)
        # A greeting comes from the event loop, which runs after the drop.
        s = self.smtp(srv.port)
        ids = proc_ids(srv.pid)
        uid, gid = self.nobody.pw_uid, self.nobody.pw_gid
        self.assertEqual(ids["Uid"], [uid] * 4, ids)
        self.assertEqual(ids["Gid"], [gid] * 4, ids)
        # No supplementary group of root's is kept: only nobody's own.
        self.assertEqual(ids["Groups"], [gid], ids)
        msg = b"Subject: as nobody\r\n\r\nserved after the drop\r\n"
        self.assertEqual(s.sendmail("a@example.com", ["b@example.com"], msg), {})
        s.quit()
        (m,) = srv.wait_messages(1)
        self.assertIn(b"X-Peer: 127.0.0.1\n\nserved after the drop\n", m["data"])
        self.assertEqual(srv.stop(), 0, srv.stderr_text())
        self.assertNotIn(b"error", srv.stderr())

    def test_not_root_fails_closed(self):
        # Run by a user that cannot change its ids: smtpd must not go on
        # serving with the wrong privileges; it says so and exits 77.
        def become_nobody():
            os.setgroups([])
            os.setgid(self.nobody.pw_gid)
            os.setuid(self.nobody.pw_uid)

        r = run_smtpd(["-c", "DebuggingServer", "127.0.0.1:0"], preexec_fn=become_nobody)
        self.assertEqual(r.returncode, EX_NOPERM, r.stderr)
        last = r.stderr.decode().splitlines()[-1]
        self.assertTrue(last.startswith("smtpd: "), last)
        self.assertIn("nobody", last)
        self.assertIn("-n", last)

    def test_nosetuid_keeps_root(self):
        srv = self.start(nosetuid=True)
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(proc_ids(srv.pid)["Uid"], [0] * 4)


if __name__ == "__main__":
    main()
