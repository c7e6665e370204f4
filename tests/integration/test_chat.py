"""The chat example (examples/chat) on real Mongrel2, php-fpm and m2bridge: its protocol over HTTP,
and two headless Chromium pages driven by Selenium that join, talk and leave."""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Stack, build_request, http_request, read_response, wait_until  # noqa: E402

CHAT_ROOT = os.path.join(ROOT, "examples", "chat")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None


class ChatStack:
    """Mongrel2 + php-fpm (4 workers) + m2bridge serving examples/chat, with its own state dir."""

    def __init__(self):
        self.state_dir = tempfile.mkdtemp(prefix="m2b-chat-state-")
        try:
            self.stack = Stack("--document-root", CHAT_ROOT, "--index", "index.php",
                               "--disconnect-path", "/chat.php", document_root=False, children=4,
                               extra_pool="env[CHAT_STATE_DIR] = " + self.state_dir, warmup="/")
        except BaseException:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        self.port = self.stack.port

    def stop(self):
        try:
            self.stack.stop()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def post(port, action, fields):
    status, _, body = http_request(port, "POST", "/chat.php?action=" + action,
                                   {"Content-Type": "application/json"}, json.dumps(fields).encode())
    return status, json.loads(body)


def wait_path(nick, key, since):
    return "/chat.php?" + urllib.parse.urlencode({"action": "wait", "nick": nick, "key": key, "since": since})


class HeldPoll:
    """A long poll on its own connection, as a browser's fetch() would hold it."""

    def __init__(self, port, nick, key, since):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(build_request("GET", wait_path(nick, key, since)))

    def nothing_yet(self, seconds=0.3):
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # bytes, or b"" for a close: either way not held
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)

    def answer(self, timeout=5):
        self.sock.settimeout(timeout)
        status, _, body = read_response(self.sock)
        return status, json.loads(body)

    def close(self):
        self.sock.close()


class ChatProtocol(unittest.TestCase):
    """chat.php over HTTP: held polls, one delivery to all of them, catch-up from the log."""

    @classmethod
    def setUpClass(cls):
        cls.chat = ChatStack()
        cls.port = cls.chat.port

    @classmethod
    def tearDownClass(cls):
        cls.chat.stop()

    def join(self, nick):
        key = nick + "-secret-key-0123456789"
        status, body = post(self.port, "join", {"nick": nick, "key": key})
        self.assertEqual(status, 200, body)
        # The tests share one chat: nobody stays in it, whatever the outcome (410 if gone already).
        self.addCleanup(post, self.port, "leave", {"nick": nick, "key": key})
        return key, body["seq"]

    def held(self, nick):
        """Whether chat.php has taken nick's poll as held (its state file names the connection)."""
        try:
            with open(os.path.join(self.chat.state_dir, "state.json")) as f:
                return json.load(f)["members"][nick]["wait"] is not None
        except ValueError:  # caught mid-write
            return False

    def wait_held(self, nick):
        wait_until(lambda: self.held(nick), timeout=5, what=nick + "'s poll to be held")

    def test_one_message_reaches_every_held_poll_and_the_sender(self):
        key_a, _ = self.join("ann")
        key_b, seq = self.join("ben")
        polls = [HeldPoll(self.port, "ann", key_a, seq), HeldPoll(self.port, "ben", key_b, seq)]
        try:
            self.wait_held("ann")
            self.wait_held("ben")
            for poll in polls:
                self.assertTrue(poll.nothing_yet(), "an up-to-date poll is held, not answered")
            status, sent = post(self.port, "send", {"nick": "ann", "key": key_a, "text": "hello ben"})
            self.assertEqual(status, 200)
            for poll in polls:
                status, got = poll.answer()
                self.assertEqual(status, 200)
                self.assertEqual(got, sent)  # the same single response, delivered
                self.assertEqual([(e["type"], e.get("text")) for e in got["events"]], [("message", "hello ben")])
                self.assertEqual(got["members"], ["ann", "ben"])
        finally:
            for poll in polls:
                poll.close()

    def test_events_between_polls_are_answered_at_once_from_the_log(self):
        key_c, seq = self.join("cat")
        key_d, _ = self.join("dan")
        post(self.port, "send", {"nick": "dan", "key": key_d, "text": "one"})
        post(self.port, "send", {"nick": "dan", "key": key_d, "text": "two"})
        start = time.time()
        status, _, body = http_request(self.port, "GET", wait_path("cat", key_c, seq), timeout=5)
        self.assertLess(time.time() - start, 2)
        got = json.loads(body)
        self.assertEqual([(e["type"], e["nick"], e.get("text")) for e in got["events"]],
                         [("join", "dan", None), ("message", "dan", "one"), ("message", "dan", "two")])
        self.assertEqual([e["seq"] for e in got["events"]], list(range(seq + 1, seq + 4)))

    def test_wrong_key_taken_nick_and_get_join_are_refused(self):
        key, _ = self.join("eve")
        self.assertEqual(post(self.port, "send", {"nick": "eve", "key": "not-eves-key-00000000", "text": "x"})[0], 403)
        self.assertEqual(post(self.port, "join", {"nick": "eve", "key": "another-key-0123456789"})[0], 409)
        self.assertEqual(http_request(self.port, "GET", "/chat.php?action=join")[0], 405)
        post(self.port, "leave", {"nick": "eve", "key": key})
        self.assertEqual(post(self.port, "send", {"nick": "eve", "key": key, "text": "x"})[0], 410)

    def test_closing_a_held_poll_makes_its_member_leave(self):
        """m2bridge --disconnect-path tells chat.php; the others hear of it in one delivery."""
        key_f, _ = self.join("fay")
        key_g, seq = self.join("gus")
        fay = HeldPoll(self.port, "fay", key_f, seq)
        gus = HeldPoll(self.port, "gus", key_g, seq)
        try:
            self.wait_held("fay")
            self.wait_held("gus")
            gus.close()
            status, got = fay.answer()
            self.assertEqual(status, 200)
            self.assertEqual([(e["type"], e["nick"], e["reason"]) for e in got["events"]],
                             [("leave", "gus", "disconnected")])
            self.assertEqual(got["members"], ["fay"])
        finally:
            fay.close()
            gus.close()


def chromium_processes(marker):
    """Pids of processes whose command line holds `marker` (this test's profile dir)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(name))
        except OSError:
            pass
    return pids


class Browser:
    """One headless Chromium under its own chromedriver, with its own profile dir; stop() leaves
    no process behind, whatever state the browser is in."""

    def __init__(self, workdir, name):
        self.profile = tempfile.mkdtemp(prefix="chromium-%s-" % name, dir=workdir)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--window-size=1000,700", "--user-data-dir=" + self.profile):
            options.add_argument(arg)
        # Its own session: the whole group can be killed even if chromedriver hangs.
        self.service = Service(CHROMEDRIVER, log_path=os.path.join(workdir, "chromedriver-%s.log" % name),
                               popen_kw={"start_new_session": True})
        self.driver = None
        try:
            self.driver = webdriver.Chrome(service=self.service, options=options)
        except BaseException:
            self.stop()
            raise

    def quit(self):
        """Closes the browser the way a user closing it would: its connections go away."""
        if self.driver is not None:
            driver, self.driver = self.driver, None
            driver.quit()

    def stop(self):
        try:
            self.quit()
        except Exception:
            pass
        process = getattr(self.service, "process", None)
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        for pid in chromium_processes(self.profile):  # any chromium that outlived its driver
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@unittest.skipIf(webdriver is None, "python3-selenium is not installed (apt-get install python3-selenium)")
class ChatInBrowsers(unittest.TestCase):
    """Two Chromium pages on one chat, shared by the tests (a browser takes seconds to start);
    each test reloads both pages and joins with its own nicks."""

    @classmethod
    def setUpClass(cls):
        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                raise unittest.SkipTest(path + " is not installed (apt-get install chromium chromium-driver)")
        cls.workdir = tempfile.mkdtemp(prefix="m2b-chat-browsers-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.chat = ChatStack()
        cls.addClassCleanup(cls.chat.stop)
        cls.first, cls.second = cls.start_browsers("first", "second")

    @classmethod
    def start_browsers(cls, *names):
        """Started side by side: each takes seconds, mostly waiting."""
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            starts = [pool.submit(Browser, cls.workdir, name) for name in names]
        browsers = []
        for start in starts:
            if start.exception() is None:
                browsers.append(start.result())
                cls.addClassCleanup(cls.stop_browser, browsers[-1])  # runs before the stack stops: LIFO
        for start in starts:
            if start.exception() is not None:
                raise start.exception()
        return browsers

    @staticmethod
    def stop_browser(browser):
        browser.stop()
        try:
            wait_until(lambda: not chromium_processes(browser.profile), timeout=5, what="chromium to exit")
        except TimeoutError:
            raise AssertionError("chromium processes left running: %s" % chromium_processes(browser.profile))

    def open_page(self, browser):
        browser.driver.get("http://127.0.0.1:%d/" % self.chat.port)
        return browser.driver

    def join(self, driver, nick):
        driver.find_element(By.ID, "nick").clear()
        driver.find_element(By.ID, "nick").send_keys(nick)
        driver.find_element(By.ID, "join").click()
        self.wait_for(driver, 5, lambda d: d.find_element(By.ID, "send-form").is_displayed(), nick + " joined")

    # Read in one script: element by element, the page may replace an element between two reads.
    @staticmethod
    def members(driver):
        return driver.execute_script("return Array.from(document.querySelectorAll('#members li'), e => e.textContent)")

    @staticmethod
    def lines(driver):
        return driver.execute_script("return Array.from(document.querySelectorAll('#messages div'), e => e.textContent)")

    def wait_for(self, driver, seconds, condition, what):
        try:
            WebDriverWait(driver, seconds, poll_frequency=0.02).until(lambda d: condition(d))
        except TimeoutException:
            self.fail("%s not seen within %s s; members %s, lines %s"
                      % (what, seconds, self.members(driver), self.lines(driver)))

    def two_members(self, nick_a, nick_b, browser_b=None):
        """Page A and page B joined as nick_a and nick_b, each seeing both."""
        page_a = self.open_page(self.first)
        page_b = self.open_page(browser_b or self.second)
        self.join(page_a, nick_a)
        self.join(page_b, nick_b)
        for page in (page_a, page_b):
            self.wait_for(page, 3, lambda d: {nick_a, nick_b} <= set(self.members(d)), "both nicks in the member list")
        self.wait_for(page_a, 3, lambda d: nick_b + " joined" in self.lines(d), nick_b + "'s join on page A")
        return page_a, page_b

    def test_message_reaches_the_other_page_within_a_second(self):
        alice, bob = self.two_members("alice", "bob")
        alice.find_element(By.ID, "text").send_keys("hello from alice")
        alice.find_element(By.ID, "send").click()
        self.wait_for(bob, 1, lambda d: "alice: hello from alice" in self.lines(d), "alice's message on bob's page")
        self.wait_for(alice, 1, lambda d: "alice: hello from alice" in self.lines(d), "alice's own message")
        bob.find_element(By.ID, "text").send_keys("hi alice")
        bob.find_element(By.ID, "send").click()
        self.wait_for(alice, 1, lambda d: "bob: hi alice" in self.lines(d), "bob's answer on alice's page")

    def test_leave_button(self):
        ann, ben = self.two_members("ann", "ben")
        ben.find_element(By.ID, "leave").click()
        self.wait_for(ann, 2, lambda d: "ben" not in self.members(d) and "ben left" in self.lines(d), "ben leaving")
        self.assertIn("ann", self.members(ann))
        self.wait_for(ben, 2, lambda d: d.find_element(By.ID, "join-form").is_displayed(), "ben's join form again")

    def test_closed_browser_leaves_the_chat(self):
        """Needs m2bridge --disconnect-path: Mongrel2 reports the closed long poll, m2bridge tells chat.php."""
        third, = self.start_browsers("third")
        cat, dan = self.two_members("cat", "dan", browser_b=third)
        third.quit()
        self.wait_for(cat, 5, lambda d: "dan" not in self.members(d) and "dan left (disconnected)" in self.lines(d),
                      "dan's closed browser leaving")
        self.assertIn("cat", self.members(cat))


if __name__ == "__main__":
    unittest.main()
