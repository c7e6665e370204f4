#include <doctest/doctest.h>

#include "bridge/netstring.h"

using namespace m2b;

TEST_CASE("netstring: payload, tag and rest") {
    auto ns = parse_netstring("5:hello,rest");
    REQUIRE(ns);
    CHECK(ns->payload == "hello");
    CHECK(ns->rest == "rest");
    auto empty = parse_netstring("0:,");
    REQUIRE(empty);
    CHECK(empty->payload.empty());
}

TEST_CASE("netstring: binary-safe payload") {
    std::string msg("15:a b:c,d\0\xff\r\nxyzw,", 19);
    auto ns = parse_netstring(msg);
    REQUIRE(ns);
    CHECK(ns->payload.size() == 15);
    CHECK(ns->payload[7] == '\0');
}

TEST_CASE("netstring: malformed input is rejected") {
    CHECK_FALSE(parse_netstring(""));
    CHECK_FALSE(parse_netstring(":x,"));
    CHECK_FALSE(parse_netstring("5:hell"));
    CHECK_FALSE(parse_netstring("5:hello"));      // no tag byte
    CHECK_FALSE(parse_netstring("5:hello;"));     // wrong tag
    CHECK_FALSE(parse_netstring("05:hello,"));    // leading zero
    CHECK_FALSE(parse_netstring("9999999999:x,"));  // absurd length
    CHECK_FALSE(parse_netstring("-1:,"));
    CHECK_FALSE(parse_netstring("3x:abc,"));
}

TEST_CASE("netstring: append") {
    std::string out;
    append_netstring(out, "abc");
    append_netstring(out, "");
    CHECK(out == "3:abc,0:,");
}

TEST_CASE("tnetstring dict: strings, lists and numbers") {
    std::string payload = "11:REMOTE_ADDR,9:127.0.0.1,5:x-dup,12:3:one,3:two,]16:DOWNLOAD_CREDITS,6:102400#";
    auto entries = parse_tnetstring_dict_payload(payload);
    REQUIRE(entries);
    REQUIRE(entries->size() == 3);
    auto values = [](const TnetEntry& e) {
        std::vector<std::string_view> out;
        for_each_value(e, [&](std::string_view v) { out.push_back(v); });
        return out;
    };
    CHECK((*entries)[0].key == "REMOTE_ADDR");
    CHECK(values((*entries)[0]) == std::vector<std::string_view>{"127.0.0.1"});
    CHECK(values((*entries)[1]) == std::vector<std::string_view>{"one", "two"});
    CHECK(values((*entries)[2]) == std::vector<std::string_view>{"102400"});
    CHECK(values(parse_tnetstring_dict_payload("1:a,0:]")->front()).empty());  // an empty list: no value
}

TEST_CASE("tnetstring dict: nested dicts and truncation are rejected") {
    CHECK_FALSE(parse_tnetstring_dict_payload("1:a,3:0:,}"));
    CHECK_FALSE(parse_tnetstring_dict_payload("1:a,"));
    CHECK_FALSE(parse_tnetstring_dict_payload("1:a#1:b,"));   // key must be a string
    CHECK_FALSE(parse_tnetstring_dict_payload("1:a,6:3:abc}]"));
    CHECK(parse_tnetstring_dict_payload("")->empty());
}
