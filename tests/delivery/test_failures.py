"""delivery_failures: what goes wrong on disk is never a 250, and nothing
partial stays behind. Needs root (it mounts tmpfs folders and drops
privileges); without it the test fails.

  - a full disk (a 256 KiB tmpfs): a message larger than the space left
    gets 452 4.3.1 from -c Maildir (tmp/ and new/ empty) and from -c Mbox
    (the file back to its size before); a small one is delivered after;
  - a read-only folder (tmpfs mounted ro): 451 4.3.0 and a log line naming
    the path;
  - the privilege drop (no -n): a folder nobody may write gives 451 4.3.0,
    one owned by nobody works, and --user names another user.

    test_failures.py --smtpd PATH
"""

import mailbox
import os
import pwd
import subprocess

from deliverlib import DeliveryCase, main, message, send


class Failures(DeliveryCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("delivery_failures needs root: it mounts tmpfs and drops privileges")

    def mount(self, *opts):
        d = self.tmpdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", d], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", d])
        return d

    def big(self):
        return message("big", (b"x" * 98 + b"\r\n") * 4000)  # 400 KB

    def test_maildir_disk_full(self):
        d = self.mount("size=256k")
        srv = self.start("--maildir", d, cls="Maildir")
        code, text = send(srv.port, self.big())
        self.assertEqual((code, text), (452, b"4.3.1 Error: insufficient system storage"))
        srv.wait_stderr(rb"No space left on device")
        self.assertEqual(os.listdir(os.path.join(d, "tmp")), [])
        self.assertEqual(os.listdir(os.path.join(d, "new")), [])
        self.assertEqual(send(srv.port, message("small"))[0], 250)
        self.assertEqual(len(os.listdir(os.path.join(d, "new"))), 1)

    def test_mbox_disk_full(self):
        path = os.path.join(self.mount("size=256k"), "mbox")
        srv = self.start("--mbox", path, cls="Mbox")
        self.assertEqual(send(srv.port, message("first"))[0], 250)
        size = os.path.getsize(path)
        code, text = send(srv.port, self.big())
        self.assertEqual((code, text[:5]), (452, b"4.3.1"))
        self.assertEqual(os.path.getsize(path), size)
        self.assertFalse(os.path.exists(path + ".lock"))
        self.assertEqual(send(srv.port, message("second"))[0], 250)
        box = mailbox.mbox(path, create=False)
        self.assertEqual([m["Subject"] for m in box], ["first", "second"])
        box.close()

    def test_read_only(self):
        d = self.mount("size=1m", "ro")
        for cls, opt, target in (("Maildir", "--maildir", os.path.join(d, "md")),
                                 ("Mbox", "--mbox", os.path.join(d, "mbox"))):
            srv = self.start(opt, target, cls=cls)
            code, text = send(srv.port, message("ro"))
            self.assertEqual((code, text[:5]), (451, b"4.3.0"), cls)
            srv.wait_stderr(rb"cannot .*" + os.path.basename(target).encode() +
                            rb".*Read-only file system")
            srv.close()
        self.assertEqual(os.listdir(d), [])

    def test_privilege_drop(self):
        root_only = self.tmpdir()  # mode 700, root's
        srv = self.start("--maildir", root_only, cls="Maildir", nosetuid=False)
        srv.wait_stderr(rb"running as user nobody")
        self.assertEqual(send(srv.port, message("denied"))[:1], (451,))
        srv.wait_stderr(rb"Permission denied")
        srv.close()
        nobody = pwd.getpwnam("nobody")
        md = os.path.join(self.tmpdir(), "md")
        os.chmod(os.path.dirname(md), 0o755)
        os.mkdir(md)
        os.chown(md, nobody.pw_uid, nobody.pw_gid)
        srv = self.start("--maildir", md, cls="Maildir", nosetuid=False)
        self.assertEqual(send(srv.port, message("allowed"))[0], 250)
        (name,) = os.listdir(os.path.join(md, "new"))
        self.assertEqual(os.stat(os.path.join(md, "new", name)).st_uid, nobody.pw_uid)
        srv.close()
        other = pwd.getpwnam("daemon")
        path = os.path.join(self.tmpdir(), "mbox")
        os.chmod(os.path.dirname(path), 0o777)
        srv = self.start("--mbox", path, "--user", "daemon", cls="Mbox", nosetuid=False)
        srv.wait_stderr(rb"running as user daemon")
        self.assertEqual(send(srv.port, message("as daemon"))[0], 250)
        self.assertEqual(os.stat(path).st_uid, other.pw_uid)


if __name__ == "__main__":
    main()
