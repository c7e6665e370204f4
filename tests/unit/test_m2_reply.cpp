#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>

#include "bridge/m2_reply.h"

using namespace m2b;

TEST_CASE("reply to one id") {
    CHECK(encode_reply("abc-1", 42, "HTTP/1.1 200 OK\r\n\r\n") == "abc-1 2:42, HTTP/1.1 200 OK\r\n\r\n");
    CHECK(encode_reply("abc", 7, "") == "abc 1:7, ");  // close message
}

TEST_CASE("many ids: at most 128 per message, netstring length exact") {
    std::vector<uint64_t> ids(300);
    std::iota(ids.begin(), ids.end(), 1);
    auto msgs = encode_reply_many("s", ids, "body");
    REQUIRE(msgs.size() == 3);
    size_t total = 0;
    for (auto& m : msgs) {
        size_t colon = m.find(':');
        size_t len = std::stoul(m.substr(2, colon - 2));
        std::string list = m.substr(colon + 1, len);
        CHECK(m.substr(colon + 1 + len, 2) == ", ");
        CHECK(m.substr(colon + 3 + len) == "body");
        size_t count = 1 + std::count(list.begin(), list.end(), ' ');
        CHECK(count <= 128);
        total += count;
    }
    CHECK(total == 300);
    CHECK(msgs[0].substr(0, 12) == "s 403:1 2 3 ");  // 276 digits + 127 spaces
}

TEST_CASE("no ids, no message") { CHECK(encode_reply_many("s", {}, "x").empty()); }

TEST_CASE("ctl keep-alive is the exact extended message") {
    std::vector<uint64_t> ids{5, 6};
    auto msgs = encode_keepalive("s", ids);
    REQUIRE(msgs.size() == 1);
    CHECK(msgs[0] == "s 5:X 5 6, 31:3:ctl,21:10:keep-alive,4:true!}]");
}
