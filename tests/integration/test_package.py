"""The Debian package, as an operator gets it: packaging/build-deb.sh builds the .deb from
the working tree, lintian finds no error in it, `apt-get install ./m2bridge_*.deb` puts the
binary, the unit, the config (a conffile), the man pages and the system user in place, and
purging it takes them away again.

Needs root, apt-get, dpkg-buildpackage and lintian (scripts/deps.sh installs them). The
package build compiles m2bridge once more (a release build): a few minutes on two cores.
"""

import glob
import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD_DEB = os.path.join(SOURCE_ROOT, "packaging", "build-deb.sh")

BINARY = "/usr/bin/m2bridge"
CONFIG = "/etc/m2bridge/m2bridge.toml"
UNIT = "/lib/systemd/system/m2bridge.service"
MAN_PAGES = {"8": "/usr/share/man/man8/m2bridge.8.gz", "5": "/usr/share/man/man5/m2bridge.toml.5.gz"}
# Left by the package on purge, as Debian does with system users and /var/www: the test
# removes them only if they were not there before it.
USER = "m2bridge"
WEB_ROOT = "/var/www/html"


def run(*argv, timeout=120, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def package_installed(name):
    status = run("dpkg-query", "-W", "-f=${Status}", name)
    return status.returncode == 0 and "ok installed" in status.stdout


def exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def missing_tools():
    tools = ["apt-get", "dpkg-buildpackage", "lintian", "git", "fakeroot"]
    return [t for t in tools if shutil.which(t) is None]


@unittest.skipIf(os.geteuid() != 0, "installs a package: needs root")
@unittest.skipIf(missing_tools(), "missing: %s (scripts/deps.sh installs them)" % " ".join(missing_tools()))
class DebianPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if package_installed("m2bridge"):
            raise unittest.SkipTest("the m2bridge package is already installed here; not touching it")
        cls.had_user = exists(pwd.getpwnam, USER)
        cls.had_group = exists(grp.getgrnam, USER)
        cls.had_web_root = os.path.exists(WEB_ROOT)
        cls.outdir = tempfile.mkdtemp(prefix="m2bridge-deb-test.")
        cls.addClassCleanup(shutil.rmtree, cls.outdir, True)

        started = time.monotonic()
        # noopt: the packaging is under test, not the optimiser; -O0 halves the build time.
        build = run(BUILD_DEB, cls.outdir, timeout=1800,
                    env=dict(os.environ, DEB_BUILD_OPTIONS="nocheck noopt parallel=2"))
        cls.build_seconds = time.monotonic() - started
        if build.returncode != 0:
            raise AssertionError("build-deb.sh failed:\n" + build.stdout + build.stderr)
        debs = glob.glob(os.path.join(cls.outdir, "m2bridge_*.deb"))
        if len(debs) != 1:
            raise AssertionError("expected one m2bridge_*.deb in %s, found %r" % (cls.outdir, os.listdir(cls.outdir)))
        cls.deb = debs[0]

        # Cleanups run last-in first-out: purge, then what the package leaves behind.
        cls.addClassCleanup(cls.restore_machine)
        install = run("apt-get", "install", "-y", "--no-install-recommends", cls.deb, timeout=600,
                      env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        cls.install_log = install.stdout + install.stderr
        if install.returncode != 0:
            raise AssertionError("apt-get install failed:\n" + cls.install_log)

    @classmethod
    def restore_machine(cls):
        run("apt-get", "purge", "-y", "m2bridge", timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if not cls.had_user and exists(pwd.getpwnam, USER):
            run("userdel", USER)
        if not cls.had_group and exists(grp.getgrnam, USER):
            run("groupdel", USER)
        if not cls.had_web_root and os.path.isdir(WEB_ROOT):
            for path in (WEB_ROOT, os.path.dirname(WEB_ROOT)):
                try:
                    os.rmdir(path)  # only while empty
                except OSError:
                    break

    def test_lintian_reports_no_error(self):
        lint = run("lintian", "--no-tag-display-limit", self.deb, timeout=600)
        errors = [line for line in lint.stdout.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], lint.stdout + lint.stderr)
        self.assertIn(lint.returncode, (0, 1), lint.stderr)  # 1: tags found (warnings are allowed)

    def test_binary_runs(self):
        version = run(BINARY, "--version")
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertRegex(version.stdout, r"^m2bridge \d+\.\d+\.\d+")

    def test_config_is_a_conffile(self):
        self.assertTrue(os.path.isfile(CONFIG))
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "m2bridge").stdout
        self.assertIn(CONFIG, conffiles)
        with open(CONFIG) as f:
            text = f.read()
        self.assertRegex(text, r'(?m)^user = "m2bridge"$')
        self.assertRegex(text, r'(?m)^fastcgi = "unix:/run/php/php8\.2-fpm\.sock"$')

    def test_installed_binary_accepts_installed_config(self):
        help_text = run(BINARY, "--help")
        if not re.search(r"\bcheck\b", help_text.stdout + help_text.stderr):
            self.skipTest("this m2bridge has no `check` mode yet")
        check = run(BINARY, "check", "--config", CONFIG)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("unix:/run/php/php8.2-fpm.sock", check.stdout)

    def test_system_user_exists(self):
        user = pwd.getpwnam(USER)
        self.assertNotEqual(user.pw_uid, 0)
        self.assertEqual(user.pw_shell, "/usr/sbin/nologin")

    def test_man_pages_are_found_and_render_without_warnings(self):
        for section, path in MAN_PAGES.items():
            self.assertTrue(os.path.isfile(path), path)
        if shutil.which("man"):
            self.assertEqual(run("man", "-w", "m2bridge").stdout.strip(), MAN_PAGES["8"])
            self.assertEqual(run("man", "-w", "5", "m2bridge.toml").stdout.strip(), MAN_PAGES["5"])
            for path in MAN_PAGES.values():
                page = run("man", "--warnings", "-l", path, env=dict(os.environ, MANWIDTH="80", MAN_DISABLE_SECCOMP="1"))
                self.assertEqual(page.returncode, 0, page.stderr)
                self.assertEqual(page.stderr, "", path)
                self.assertIn("m2bridge", page.stdout)

    def test_unit_is_installed_enabled_and_valid(self):
        self.assertTrue(os.path.isfile(UNIT))
        with open(UNIT) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/bin/m2bridge --config /etc/m2bridge/m2bridge.toml\n", unit)
        self.assertIn("Type=notify\n", unit)
        self.assertTrue(os.path.islink("/etc/systemd/system/multi-user.target.wants/m2bridge.service"),
                        "dh_installsystemd did not enable the unit:\n" + self.install_log)
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        verify = run("systemd-analyze", "verify", UNIT)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        # Unknown keys are only warnings for verify: none may name this unit.
        self.assertNotIn("m2bridge.service:", verify.stdout + verify.stderr)

    @classmethod
    def tearDownClass(cls):
        print("\n[package build took %.0f s]" % cls.build_seconds, end=" ")


if __name__ == "__main__":
    unittest.main(verbosity=2)
