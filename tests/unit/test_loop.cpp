#include <doctest/doctest.h>

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <chrono>
#include <memory>
#include <vector>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/loop.h"

using namespace m2b;

TEST_CASE("a watch with mask 0 hears nothing, not even EPOLLHUP, and hears again once re-enabled") {
    Loop loop;
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    close(sv[1]);  // the peer is gone: EPOLLHUP, which epoll reports whatever the mask
    int calls = 0;
    REQUIRE(loop.watch(sv[0], EPOLLIN, [&](uint32_t) { ++calls; }));
    REQUIRE(loop.set_events(sv[0], 0));
    for (int i = 0; i < 3; ++i) loop.run_once(0);
    CHECK(calls == 0);

    REQUIRE(loop.set_events(sv[0], EPOLLIN));
    loop.run_once(0);
    CHECK(calls == 1);
    loop.unwatch(sv[0]);
    close(sv[0]);
}

TEST_CASE("a descriptor closed and reused within one turn never gets the old descriptor's event") {
    Loop loop;
    int a[2], b[2];
    REQUIRE(pipe2(a, O_NONBLOCK | O_CLOEXEC) == 0);
    REQUIRE(pipe2(b, O_NONBLOCK | O_CLOEXEC) == 0);
    REQUIRE(write(a[1], "x", 1) == 1);
    REQUIRE(write(b[1], "x", 1) == 1);
    // Both are ready in this turn. Whichever callback runs first replaces the
    // other's read end by an empty pipe under the same number and watches it.
    int first = -1, fresh_calls = 0, old_calls = 0, fresh_writer = -1;
    auto replace = [&](int self, int other) {
        if (first >= 0) {
            ++old_calls;
            return;
        }
        first = self;
        loop.unwatch(other);
        int p[2];
        REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
        REQUIRE(dup3(p[0], other, O_CLOEXEC) == other);  // same number, new (empty) pipe
        close(p[0]);
        fresh_writer = p[1];
        REQUIRE(loop.watch(other, EPOLLIN, [&](uint32_t) { ++fresh_calls; }));
    };
    REQUIRE(loop.watch(a[0], EPOLLIN, [&](uint32_t) { replace(a[0], b[0]); }));
    REQUIRE(loop.watch(b[0], EPOLLIN, [&](uint32_t) { replace(b[0], a[0]); }));
    loop.run_once(0);
    CHECK(first >= 0);
    CHECK(old_calls == 0);
    CHECK(fresh_calls == 0);  // its pipe is empty: the event was the old pipe's
    close(fresh_writer);
    for (int fd : {a[0], a[1], b[0], b[1]}) {
        loop.unwatch(fd);
        close(fd);
    }
}

TEST_CASE("watch reports a descriptor epoll refuses instead of throwing") {
    Loop loop;
    char path[] = "/tmp/m2b-loop-test.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    errno = 0;
    CHECK_FALSE(loop.watch(fd, EPOLLIN, [](uint32_t) {}));  // a regular file cannot be polled
    CHECK(errno == EPERM);
    close(fd);

    bool ran = false;  // the loop is unharmed
    loop.post([&] { ran = true; });
    loop.run_once(0);
    CHECK(ran);
}

TEST_CASE("run_once runs due timers and posted tasks; dispose_later destroys on the next turn") {
    Loop loop;
    bool fired = false;
    loop.after(std::chrono::milliseconds(0), [&] { fired = true; });
    auto destroyed = std::make_shared<bool>(false);
    struct Probe {
        std::shared_ptr<bool> flag;
        ~Probe() { *flag = true; }
    };
    auto probe = std::make_unique<Probe>();
    probe->flag = destroyed;
    loop.dispose_later(std::move(probe));
    CHECK_FALSE(*destroyed);
    loop.run_once(100);
    CHECK(fired);
    CHECK(*destroyed);
}

TEST_CASE("rebind hands a watch to a new callback, even from inside the old one, mask unchanged") {
    Loop loop;
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    int first = 0, second = 0;
    CHECK_FALSE(loop.rebind(sv[0], [](uint32_t) {}));  // not watched: nothing to hand over
    REQUIRE(loop.watch(sv[0], EPOLLIN, [&](uint32_t) {
        ++first;
        // The running callback is replaced; it must finish safely (a connection handed
        // back to the pool from inside its exchange's own event).
        CHECK(loop.rebind(sv[0], [&](uint32_t) { ++second; }));
        CHECK(first == 1);
    }));
    loop.run_once(0);
    CHECK(first == 1);
    loop.run_once(0);  // the byte is still unread: level-triggered, now to the new callback
    CHECK(first == 1);
    CHECK(second == 1);
    loop.unwatch(sv[0]);
    close(sv[0]);
    close(sv[1]);
}

TEST_CASE("timers: due together they fire in the order set; cancelled ones, even by a timer of the same turn, never") {
    Loop loop;
    std::vector<int> fired;
    Loop::TimerId third = 0;
    loop.after(std::chrono::milliseconds(0), [&] {
        fired.push_back(1);
        loop.cancel(third);  // due in this same turn
    });
    Loop::TimerId second = loop.after(std::chrono::milliseconds(0), [&] { fired.push_back(2); });
    third = loop.after(std::chrono::milliseconds(0), [&] { fired.push_back(3); });
    loop.after(std::chrono::milliseconds(0), [&] { fired.push_back(4); });
    Loop::TimerId cancelled = loop.after(std::chrono::milliseconds(0), [&] { fired.push_back(5); });
    CHECK(second != 0);
    loop.cancel(cancelled);
    CHECK(loop.timers() == 4);
    loop.run_once(10);
    CHECK(fired == std::vector<int>{1, 2, 4});
    CHECK(loop.timers() == 0);
}

TEST_CASE("timers: a timer set by a callback waits for the next turn, and the earliest deadline fires first") {
    Loop loop;
    std::vector<int> fired;
    loop.after(std::chrono::milliseconds(30), [&] { fired.push_back(30); });
    loop.after(std::chrono::milliseconds(0), [&] {
        fired.push_back(0);
        loop.after(std::chrono::milliseconds(0), [&] { fired.push_back(1); });
    });
    loop.after(std::chrono::milliseconds(10), [&] { fired.push_back(10); });
    loop.run_once(0);
    CHECK(fired == std::vector<int>{0});
    for (int i = 0; i < 100 && fired.size() < 4; ++i) loop.run_once(50);
    CHECK(fired == std::vector<int>{0, 1, 10, 30});
}

TEST_CASE("timers: an id that fired cancels nothing, not the timer that reuses its slot") {
    Loop loop;
    int first = 0, second = 0;
    Loop::TimerId a = loop.after(std::chrono::milliseconds(0), [&] { ++first; });
    loop.run_once(10);
    REQUIRE(first == 1);
    Loop::TimerId b = loop.after(std::chrono::milliseconds(0), [&] { ++second; });
    CHECK(b != a);
    CHECK(b != 0);
    loop.cancel(a);
    loop.run_once(10);
    CHECK(second == 1);
}

TEST_CASE("timers: long deadlines cancelled at once leave no memory behind") {
    // A request's deadline is set for minutes and cancelled within milliseconds:
    // a million of them must not keep a million heap entries.
    Loop loop;
    Loop::TimerId kept = loop.after(std::chrono::hours(1), [] {});
    for (int i = 0; i < 1'000'000; ++i) loop.cancel(loop.after(std::chrono::minutes(5), [] {}));
    CHECK(loop.timers() == 1);
    CHECK(loop.timer_entries() <= 64 + 2 + 1);
    loop.cancel(kept);
    CHECK(loop.timers() == 0);
}

TEST_CASE("timers: a cancelled callback whose captures set a timer as they die (ASan: no write into a moved slot)") {
    Loop loop;
    int fired = 0;
    // The deleter runs when the callback holding the last reference is destroyed by cancel().
    std::shared_ptr<void> sets_timer(nullptr, [&](void*) { loop.after(std::chrono::milliseconds(0), [&] { ++fired; }); });
    Loop::TimerId id = loop.after(std::chrono::hours(1), [guard = std::move(sets_timer)] {});
    loop.cancel(id);
    CHECK(loop.timers() == 1);
    loop.run_once(10);
    CHECK(fired == 1);
}
