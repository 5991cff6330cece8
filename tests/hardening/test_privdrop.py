"""hard_privdrop: run as root without -n, smtpd binds (a privileged port too)
and then is nobody: /proc/PID/status shows nobody's uid and gid in all four
slots (real, effective, saved, filesystem), supplementary groups that are
nobody's only (never root's), and no capabilities. This test needs root: not
being root is a failure, not a skip.
"""

import grp
import os
import pwd
import random
import socket
import time

from hardlib import HardTestCase, main, proc_status, send_mail_smtplib


def free_privileged_port():
    start = random.randrange(600, 1000)
    for port in list(range(start, 1024)) + list(range(600, start)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port below 1024 on 127.0.0.1")


class PrivDropTest(HardTestCase):

    def setUp(self):
        self.assertEqual(os.geteuid(), 0, "hard_privdrop must run as root")
        self.nobody = pwd.getpwnam("nobody")
        self.groups = set(os.getgrouplist("nobody", self.nobody.pw_gid))

    def check_dropped(self, pid):
        st = proc_status(pid)
        uid, gid = str(self.nobody.pw_uid), str(self.nobody.pw_gid)
        self.assertEqual(st["Uid"].split(), [uid] * 4, "Uid: " + st["Uid"])
        self.assertEqual(st["Gid"].split(), [gid] * 4, "Gid: " + st["Gid"])
        groups = set(int(g) for g in st["Groups"].split())
        self.assertNotIn(0, groups, "still in group root: " + st["Groups"])
        self.assertTrue(groups <= self.groups, "Groups %r are not nobody's %r"
                        % (st["Groups"], sorted(self.groups)))
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(st[cap], 16), 0, "%s: %s" % (cap, st[cap]))
        return st

    def test_drop_after_bind_privileged_port(self):
        port = free_privileged_port()
        srv = self.start(nosetuid=False, listen="127.0.0.1:%d" % port)
        self.assertEqual(srv.port, port)
        # The greeting comes from the event loop, which runs after the drop.
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        st = self.check_dropped(srv.pid)
        print("\nsmtpd on port %d: Uid %s, Gid %s, Groups %s (nobody: %s/%s %s)"
              % (port, " ".join(st["Uid"].split()), " ".join(st["Gid"].split()),
                 st["Groups"] or "-", self.nobody.pw_uid,
                 self.nobody.pw_gid, grp.getgrgid(self.nobody.pw_gid).gr_name))
        # It still serves mail as nobody.
        send_mail_smtplib(srv.port, "as-nobody")
        self.assertEqual(srv.wait_messages(1, 10), 1)
        self.check_dropped(srv.pid)

    def test_drop_with_sink_and_ephemeral_port(self):
        srv = self.start(nosetuid=False, cls="Sink")
        deadline = time.monotonic() + 5
        while proc_status(srv.pid)["Uid"].split()[0] == "0" and time.monotonic() < deadline:
            time.sleep(0.05)
        self.check_dropped(srv.pid)
        send_mail_smtplib(srv.port, "sink-as-nobody")

    def test_nosetuid_keeps_root(self):
        """Control: with -n the ids are left alone (so the check above means
        something)."""
        srv = self.start(nosetuid=True)
        c = self.raw(srv.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(proc_status(srv.pid)["Uid"].split()[0], "0")


if __name__ == "__main__":
    main()
