// The ZMTP codec: what m2bridge says in its handshake, and how it reads a
// peer's greeting, frame heads and commands (rfc.zeromq.org/spec/37).
#include <doctest/doctest.h>

#include <string>

#include "bridge/zmtp.h"

using namespace m2b::zmtp;

namespace {
std::string peer_greeting(char major = 3, std::string_view mechanism = "NULL") {
    std::string g(kGreetingSize, '\0');
    g[0] = '\xff';
    g[9] = '\x7f';
    g[10] = major;
    g[11] = 1;
    g.replace(12, mechanism.size(), mechanism);
    g[32] = 1;
    return g;
}
}  // namespace

TEST_CASE("our greeting is ZMTP 3.1, NULL, as a client; our READY names our socket type") {
    std::string g = greeting();
    REQUIRE(g.size() == 64);
    CHECK(g.substr(0, 12) == std::string("\xff\0\0\0\0\0\0\0\0\x7f\x03\x01", 12));
    CHECK(g.substr(12, 20) == std::string("NULL") + std::string(16, '\0'));
    CHECK(g[32] == 0);
    std::string ready = ready_command("PULL");
    CHECK(ready == std::string("\x04\x1a\x05READY\x0bSocket-Type\0\0\0\x04PULL", 28));
    std::string_view type;
    CHECK(ready_socket_type(std::string_view(ready).substr(2), type));
    CHECK(type == "PULL");
}

TEST_CASE("a peer's greeting: ZMTP 3 with NULL is taken; anything else is told apart early") {
    std::string why;
    CHECK(check_greeting(peer_greeting(), why) == Parse::Ok);
    CHECK(check_greeting(peer_greeting().substr(0, 40), why) == Parse::NeedMore);
    CHECK(check_greeting("GET / HTTP/1.1\r\n", why) == Parse::Bad);  // one byte is enough
    CHECK(why.find("not a ZeroMQ peer") != std::string::npos);
    CHECK(check_greeting(peer_greeting(2).substr(0, 11), why) == Parse::Bad);
    CHECK(why.find("3.0 or later") != std::string::npos);
    CHECK(check_greeting(peer_greeting(3, "CURVE"), why) == Parse::Bad);
    CHECK(why.find("CURVE") != std::string::npos);
}

TEST_CASE("frame heads: short and long sizes, flags, and what is malformed") {
    FrameHead head;
    CHECK(parse_frame_head("", head) == Parse::NeedMore);
    CHECK(parse_frame_head(std::string("\x01", 1), head) == Parse::NeedMore);
    REQUIRE(parse_frame_head(std::string("\x01\x05hello", 7), head) == Parse::Ok);
    CHECK(head.more);
    CHECK_FALSE(head.command);
    CHECK(head.size == 5);
    CHECK(head.head_size == 2);
    REQUIRE(parse_frame_head(std::string("\x02\0\0\0\0\0\x01\0\0", 9), head) == Parse::Ok);
    CHECK(head.size == 65536);
    CHECK(head.head_size == 9);
    CHECK(parse_frame_head(std::string("\x02\0\0\0", 4), head) == Parse::NeedMore);
    CHECK(parse_frame_head(std::string("\x08\x01", 2), head) == Parse::Bad);  // a reserved bit
    CHECK(parse_frame_head(std::string("\x05\x01", 2), head) == Parse::Bad);  // a command with MORE
    CHECK(parse_frame_head(std::string("\x02\x80\0\0\0\0\0\0\0", 9), head) == Parse::Bad);

    char out[kMaxFrameHead];
    for (uint64_t size : {uint64_t{0}, uint64_t{255}, uint64_t{256}, uint64_t{1} << 40}) {
        size_t n = write_frame_head(out, size);
        REQUIRE(parse_frame_head(std::string_view(out, n), head) == Parse::Ok);
        CHECK(head.size == size);
        CHECK(head.head_size == n);
        CHECK_FALSE(head.command);
    }
}

TEST_CASE("commands: READY's properties are read within bounds; PING gets its context back") {
    std::string_view type;
    std::string props = std::string("\x05READY", 6) + std::string("\x08Identity\0\0\0\0", 13) +
                        std::string("\x0bsocket-type\0\0\0\x04PUSH", 20);
    CHECK(ready_socket_type(props, type));  // names are case-insensitive
    CHECK(type == "PUSH");
    CHECK_FALSE(ready_socket_type(std::string("\x05READY\x0bSocket-Type\0\0\0\x09PUSH", 23), type));  // runs past the end
    CHECK_FALSE(ready_socket_type(std::string("\x05READY", 6), type));  // no Socket-Type
    CHECK_FALSE(ready_socket_type(std::string("\x05ERROR\x03" "bad", 10), type));
    CHECK(command_name(std::string("\x09SUBSCRIBEtopic", 15)) == "SUBSCRIBE");
    CHECK(command_name(std::string("\x09SUB", 4)).empty());
    CHECK(pong_for(std::string("\x04PING\x00\x0a" "ctx", 10)) == std::string("\x04\x08\x04PONGctx", 10));
    CHECK(pong_for(std::string("\x04PING", 5)) == std::string("\x04\x05\x04PONG", 7));
}

TEST_CASE("endpoints: tcp with a name, an IPv4 or a bracketed IPv6 host and a port; ipc with a path") {
    Endpoint e;
    std::string why;
    REQUIRE(parse_endpoint("tcp://127.0.0.1:9997", e, why));
    CHECK_FALSE(e.ipc);
    CHECK(e.host == "127.0.0.1");
    CHECK(e.port == "9997");
    REQUIRE(parse_endpoint("tcp://[::1]:9996", e, why));
    CHECK(e.host == "::1");
    CHECK(e.ipv6_literal);
    REQUIRE(parse_endpoint("ipc://@m2", e, why));
    CHECK(e.ipc);
    CHECK(e.path == "@m2");
    CHECK(parse_endpoint("ipc://" + std::string(107, 'p'), e, why));

    auto refused = [&](std::string_view text) {
        Endpoint ignored;
        std::string reason;
        CHECK_FALSE(parse_endpoint(text, ignored, reason));
        return reason;
    };
    CHECK(refused("127.0.0.1:9997") == "not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)");
    CHECK(refused("tcp://") == "nothing after tcp://");
    CHECK(refused("udp://h:1") == "unknown transport udp (tcp or ipc)");
    CHECK(refused("inproc://x") == "unknown transport inproc (tcp or ipc)");
    CHECK(refused("ipc://" + std::string(108, 'p')) == "an ipc path of 1 to 107 bytes is needed");
    for (const char* bad : {"tcp://nowhere", "tcp://h:0", "tcp://h:65536", "tcp://h:12a", "tcp://:9997", "tcp://h:"})
        CHECK(refused(bad) == "expected tcp://HOST:PORT with a port from 1 to 65535");
    CHECK(refused("tcp://*:9997") == "a host to connect to is needed");
    CHECK(refused("tcp://[]:9997") == "a host to connect to is needed");
}
