"""integ_docs: the README and the man page name every option the program
takes, and take no option it does not have (every option in both, the
project's rule). The options are read from `smtpd --help`; the man page
writes them with escaped dashes (\\-\\-name)."""

import os
import re

from smtpd_harness import SmtpdTestCase, main, run_smtpd

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


class DocsTest(SmtpdTestCase):

    def setUp(self):
        r = run_smtpd(["--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        # The options are the words that start the lines of the list.
        self.help = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)", r.stdout.decode(), re.M))
        self.assertIn("tls-cert", self.help)
        self.assertGreater(len(self.help), 30)
        self.readme = read("README.md")
        self.man = read("man", "smtpd.1").replace("\\-", "-")

    def test_every_option_is_in_the_readme_and_the_man_page(self):
        for name in sorted(self.help):
            with self.subTest(option=name):
                self.assertIn("`--%s" % name, self.readme, "README.md lacks --%s" % name)
                entry = re.compile(r"^\.B[IR]?\b.*--%s\b" % re.escape(name), re.M)
                self.assertTrue(entry.search(self.man), "man/smtpd.1 has no entry for --%s" % name)

    def test_the_docs_name_no_option_the_program_lacks(self):
        for text, where in ((self.man, "man/smtpd.1"),):
            for name in sorted(set(OPTION.findall(text))):
                with self.subTest(where=where, option=name):
                    self.assertIn(name, self.help, "%s names --%s" % (where, name))
        # README: the options table (its rows start with an option).
        rows = re.findall(r"^\| `(--[a-z0-9-]+)", self.readme, re.M)
        self.assertGreater(len(rows), 10)
        for opt in rows:
            with self.subTest(where="README.md", option=opt):
                self.assertIn(opt[2:], self.help)


if __name__ == "__main__":
    main()
