#include <doctest/doctest.h>

#include <string>

#include "bridge/out_frame.h"

using namespace m2b;

TEST_CASE("an out frame takes bytes at its end up to its capacity and a head in its room in front") {
    OutFrame f(8, 10);
    CHECK(f.allocated());
    CHECK(f.empty());
    CHECK(f.headroom() == 8);
    CHECK(f.append("hello") == 5);
    CHECK(f.append(", world") == 5);  // only what fits
    CHECK(f.view() == "hello, wor");
    CHECK(f.tailroom() == 0);
    CHECK_FALSE(f.prepend("123456789"));  // larger than the room: nothing changes
    CHECK(f.view() == "hello, wor");
    CHECK(f.prepend("12345678"));
    CHECK(f.view() == "12345678hello, wor");
    CHECK(f.headroom() == 0);
}

TEST_CASE("consuming from the front makes room for an envelope; truncating drops the tail") {
    OutFrame f(0, 16);
    f.append("0123456789");
    f.consume(4);
    CHECK(f.view() == "456789");
    CHECK(f.headroom() == 4);
    CHECK(f.prepend("abcd"));
    CHECK(f.view() == "abcd456789");
    f.truncate(6);
    CHECK(f.view() == "abcd45");
    f.consume(100);
    CHECK(f.empty());
}

TEST_CASE("an empty frame has no room, and room asked of it allocates") {
    OutFrame f;
    CHECK(f.headroom() == 0);
    CHECK(f.tailroom() == 0);
    CHECK_FALSE(f.prepend(""));
    f.reserve_tail(3);
    CHECK(f.append("abc") == 3);
    CHECK(f.view() == "abc");
}

TEST_CASE("a prepend can keep room in front for what goes before it") {
    OutFrame f(10, 4);
    f.append("body");
    CHECK_FALSE(f.prepend("head ", 6));
    CHECK(f.prepend("head ", 5));
    CHECK(f.headroom() == 5);
}

TEST_CASE("more room at the end keeps the bytes") {
    OutFrame f(4, 4);
    f.append("abcd");
    f.reserve_tail(1 << 20);
    CHECK(f.tailroom() >= (1 << 20));
    CHECK(f.append(std::string(1 << 20, 'x')) == (1 << 20));
    CHECK(f.view().substr(0, 5) == "abcdx");
    CHECK(f.size() == 4 + (1 << 20));
}

TEST_CASE("a frame that waits in a queue gives its unused room back and keeps its bytes") {
    OutFrame f(16, 64 * 1024);
    f.append("body");
    CHECK(f.prepend("env "));
    CHECK(f.footprint() >= 64 * 1024);
    f.shrink_to_fit();
    CHECK(f.view() == "env body");
    CHECK(f.footprint() < 1024);
    CHECK(f.headroom() == 12);
    CHECK(f.tailroom() == 0);
}

TEST_CASE("moving a frame moves its block") {
    OutFrame a(0, 8);
    a.append("abc");
    OutFrame b = std::move(a);
    CHECK_FALSE(a.allocated());
    CHECK(b.view() == "abc");
    OutFrame c(0, 4);
    c = std::move(b);
    CHECK(c.view() == "abc");
    c = OutFrame();
    CHECK_FALSE(c.allocated());
}
