// Mongrel2Sockets (its own ZMTP) against real libzmq peers on loopback TCP, as
// Mongrel2 binds them: a PUSH for requests and a SUB for replies. The SUB here
// reads only when the test says so, with a high-water mark of one message, so
// that what the bridge sent stays queued on the bridge's side until it does.
// The bridge writes from its loop: a test runs the loop while it waits.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <vector>
#include <string>
#include <zmq.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/loop.h"
#include "base/unique_fd.h"
#include "bridge/m2_sockets.h"
#include "bridge/zmtp.h"

using namespace m2b;

namespace {

struct FakeMongrel2 {
    zmq::context_t context{1};
    zmq::socket_t requests{context, zmq::socket_type::push};
    zmq::socket_t replies{context, zmq::socket_type::sub};
    std::string send_spec, recv_spec;

    FakeMongrel2() {
        replies.set(zmq::sockopt::rcvhwm, 1);
        replies.set(zmq::sockopt::rcvbuf, 64 * 1024);
        replies.set(zmq::sockopt::subscribe, "");
        replies.set(zmq::sockopt::rcvtimeo, 5000);
        requests.bind("tcp://127.0.0.1:*");
        replies.bind("tcp://127.0.0.1:*");
        send_spec = requests.get(zmq::sockopt::last_endpoint);
        recv_spec = replies.get(zmq::sockopt::last_endpoint);
    }

    // Runs the bridge's loop until a reply arrives (or 5 s pass).
    std::string receive(Loop& loop) {
        replies.set(zmq::sockopt::rcvtimeo, 1);
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < until) {
            zmq::message_t m;
            if (replies.recv(m)) return m.to_string();
            loop.run_once(1);
        }
        return "";
    }
};

// PUB drops what it sends before the subscription has arrived: send until one gets through.
void wait_until_subscribed(Loop& loop, Mongrel2Sockets& sockets, FakeMongrel2& m2) {
    m2.replies.set(zmq::sockopt::rcvtimeo, 20);
    for (int i = 0; i < 250; ++i) {
        sockets.send("probe");
        loop.run_once(0);
        zmq::message_t m;
        if (m2.replies.recv(m)) {
            // Probes sent before this one may still be on their way: let them all arrive.
            do loop.run_once(0);
            while (m2.replies.recv(m));
            return;
        }
    }
    FAIL("the SUB never received a probe");
}

// A PUSH blocks until a peer is connected, and the peer is the bridge's loop:
// run it between tries.
void push(Loop& loop, zmq::socket_t& requests, std::string_view bytes, bool more = false) {
    for (int i = 0; i < 500; ++i) {
        auto flags = zmq::send_flags::dontwait | (more ? zmq::send_flags::sndmore : zmq::send_flags::none);
        if (requests.send(zmq::buffer(bytes), flags)) return;
        loop.run_once(10);
    }
    FAIL("the PUSH never had a peer");
}

}  // namespace

TEST_CASE("large replies count as queued until Mongrel2 has them, and a waiter wakes when they are") {
    FakeMongrel2 m2;
    Loop loop;
    Mongrel2Sockets sockets(loop, m2.send_spec, m2.recv_spec);
    wait_until_subscribed(loop, sockets, m2);

    const size_t frame = 1024 * 1024;
    const int frames = 48;
    std::string body(frame - 10, 'x');
    for (int i = 0; i < frames; ++i) sockets.send("0123456789", body);
    // The peer reads nothing: at most what the TCP buffers (a few MiB on loopback) and its
    // one-message pipe hold has left.
    CHECK(sockets.queued_bytes() > 16 * frame);
    CHECK(sockets.queued_bytes() <= frames * (frame + 1024));  // each block and its frame head

    bool woken = false;
    sockets.when_queued_below(frame, [&] { woken = true; });
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (std::chrono::steady_clock::now() < until) loop.run_once(10);
    CHECK_FALSE(woken);
    CHECK(sockets.queued_bytes() > 16 * frame);

    for (int i = 0; i < frames; ++i) {
        std::string got = m2.receive(loop);
        REQUIRE(got.size() == frame);
        CHECK(got.compare(0, 10, "0123456789") == 0);
    }
    for (int i = 0; i < 500 && !woken; ++i) loop.run_once(10);
    CHECK(woken);
    CHECK(sockets.queued_bytes() <= frame);
}

TEST_CASE("sockets destroyed with replies queued and a waiter registered call no one back") {
    FakeMongrel2 m2;
    Loop loop;
    auto sockets = std::make_unique<Mongrel2Sockets>(loop, m2.send_spec, m2.recv_spec);
    wait_until_subscribed(loop, *sockets, m2);
    for (int i = 0; i < 48; ++i) sockets->send("0123456789", std::string(1024 * 1024, 'q'));
    for (int i = 0; i < 20; ++i) loop.run_once(5);
    REQUIRE(sockets->queued_bytes() > 0);  // the peer reads nothing
    bool woken = false;
    sockets->when_queued_below(0, [&] { woken = true; });
    sockets.reset();  // under ASan, a call into a destroyed member shows here
    loop.run_once(0);
    CHECK_FALSE(woken);
}

TEST_CASE("every reply counts until it is written, and a waiter whose mark is met already wakes on the next turn") {
    FakeMongrel2 m2;
    Loop loop;
    Mongrel2Sockets sockets(loop, m2.send_spec, m2.recv_spec);
    wait_until_subscribed(loop, sockets, m2);

    sockets.send("0123456789", std::string(1000, 'y'));
    CHECK(sockets.queued_bytes() >= 1010);  // written when the loop runs, not before
    CHECK(m2.receive(loop).size() == 1010);
    CHECK(sockets.queued_bytes() == 0);

    bool woken = false;
    sockets.when_queued_below(1024, [&] { woken = true; });
    CHECK_FALSE(woken);  // never from inside the call
    loop.run_once(0);
    CHECK(woken);
}

TEST_CASE("frames handed over reach Mongrel2 with their envelope in front, and count until they have") {
    FakeMongrel2 m2;
    Loop loop;
    Mongrel2Sockets sockets(loop, m2.send_spec, m2.recv_spec);
    wait_until_subscribed(loop, sockets, m2);

    // Small ones count too: 48 MiB of 4 KiB frames while the peer reads nothing.
    const size_t frame = 4096;
    const int frames = 48 * 256;
    std::string body(frame - 10, 'z');
    for (int i = 0; i < frames; ++i) {
        OutFrame f(OutFrame::kEnvelopeRoom, body.size());
        f.append(body);
        sockets.send("0123456789", std::move(f));
    }
    CHECK(sockets.queued_bytes() > 16 * 1024 * 1024);
    for (int i = 0; i < frames; ++i) {
        std::string got = m2.receive(loop);
        REQUIRE(got.size() == frame);
        CHECK(got.compare(0, 12, "0123456789zz") == 0);
    }

    // A sender longer than the room in front: the frame is copied, not lost.
    std::string sender(200, 's');
    OutFrame tight(OutFrame::kEnvelopeRoom, 16);
    tight.append("body");
    sockets.send(sender + " 1:7, ", std::move(tight));
    CHECK(m2.receive(loop) == sender + " 1:7, body");

    for (int i = 0; i < 500 && sockets.queued_bytes() > 0; ++i) loop.run_once(2);
    CHECK(sockets.queued_bytes() == 0);
}

TEST_CASE("requests pushed by Mongrel2 arrive one message each; multipart ones are dropped") {
    FakeMongrel2 m2;
    Loop loop;
    Mongrel2Sockets sockets(loop, m2.send_spec, m2.recv_spec);
    std::vector<std::string> got;
    sockets.set_receiver([&](std::string_view m) { got.emplace_back(m); }, [](std::string_view) {});
    push(loop, m2.requests, "first");
    push(loop, m2.requests, "part one", true);
    push(loop, m2.requests, "part two");
    std::string large(300 * 1024, 'L');  // a long frame, larger than one read
    push(loop, m2.requests, large);
    push(loop, m2.requests, "last");
    for (int i = 0; i < 500 && got.size() < 3; ++i) loop.run_once(10);
    REQUIRE(got.size() == 3);
    CHECK(got[0] == "first");
    CHECK(got[1] == large);
    CHECK(got[2] == "last");
}

TEST_CASE("a restarted Mongrel2: the lost connection is reported, replies queued for it go, and both sockets come back") {
    Loop loop;
    std::string send_spec, recv_spec;
    std::vector<std::string> lost;
    std::vector<std::string> got;
    std::unique_ptr<Mongrel2Sockets> sockets;
    {
        FakeMongrel2 first;
        send_spec = first.send_spec;
        recv_spec = first.recv_spec;
        sockets = std::make_unique<Mongrel2Sockets>(loop, send_spec, recv_spec);
        sockets->set_receiver([&](std::string_view m) { got.emplace_back(m); },
                              [&](std::string_view why) { lost.emplace_back(why); });
        push(loop, first.requests, "before");
        for (int i = 0; i < 500 && got.empty(); ++i) loop.run_once(10);
        REQUIRE(got.size() == 1);
        wait_until_subscribed(loop, *sockets, first);
    }
    // Replies for the old server: queued now, dropped with its connection.
    for (int i = 0; i < 64; ++i) sockets->send("0123456789", std::string(64 * 1024, 'o'));
    for (int i = 0; i < 500 && lost.empty(); ++i) loop.run_once(10);
    REQUIRE_FALSE(lost.empty());
    CHECK(lost[0].find("disconnected") != std::string::npos);
    CHECK(sockets->queued_bytes() == 0);

    // The same endpoints again, as a restarted Mongrel2 binds them.
    zmq::context_t context{1};
    zmq::socket_t requests{context, zmq::socket_type::push};
    zmq::socket_t replies{context, zmq::socket_type::sub};
    replies.set(zmq::sockopt::subscribe, "");
    replies.set(zmq::sockopt::rcvtimeo, 20);
    requests.bind(send_spec);
    replies.bind(recv_spec);
    push(loop, requests, "after");
    for (int i = 0; i < 500 && got.size() < 2; ++i) loop.run_once(10);
    REQUIRE(got.size() == 2);
    CHECK(got[1] == "after");
    bool through = false;
    for (int i = 0; i < 250 && !through; ++i) {
        sockets->send("again");
        loop.run_once(5);
        zmq::message_t m;
        through = replies.recv(m).has_value() && m.to_string() == "again";
    }
    CHECK(through);
}

namespace {
// A TCP listener that plays Mongrel2 by hand: what a libzmq peer would not do.
struct RawPeer {
    UniqueFd listener, conn;
    std::string endpoint;
    RawPeer() {
        listener = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof in;
        REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&in), len) == 0);
        REQUIRE(::listen(listener.get(), 4) == 0);
        REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&in), &len) == 0);
        endpoint = "tcp://127.0.0.1:" + std::to_string(ntohs(in.sin_port));
    }
    void accept_one(Loop& loop) {
        for (int i = 0; i < 500 && !conn; ++i) {
            loop.run_once(5);
            conn = UniqueFd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        }
        REQUIRE(conn);
    }
    void write_all(Loop& loop, std::string_view bytes) {
        while (!bytes.empty()) {
            ssize_t n = ::send(conn.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n > 0) bytes.remove_prefix(static_cast<size_t>(n));
            else loop.run_once(1);
        }
    }
};

std::string handshake_as(std::string_view type) {
    std::string g = zmtp::greeting();
    g[32] = 1;  // as-server, as Mongrel2 binds
    return g + zmtp::ready_command(type);
}
}  // namespace

// A libzmq PUSH for requests, and a raw peer, accepted, where the SUB belongs.
struct RawReplies {
    RawPeer replies;
    zmq::context_t context{1};
    zmq::socket_t requests{context, zmq::socket_type::push};
    Loop loop;
    std::unique_ptr<Mongrel2Sockets> sockets;
    RawReplies() {
        requests.bind("tcp://127.0.0.1:*");
        sockets = std::make_unique<Mongrel2Sockets>(loop, requests.get(zmq::sockopt::last_endpoint), replies.endpoint);
        replies.accept_one(loop);
    }
};

TEST_CASE("replies sent before the handshake is done are dropped, not queued") {
    RawReplies m2;  // the raw peer never greets
    auto& [replies, context, requests, loop, sockets_ptr] = m2;
    Mongrel2Sockets& sockets = *sockets_ptr;
    for (int i = 0; i < 200; ++i) sockets.send("0123456789", std::string(64 * 1024, 'h'));
    loop.run_once(0);
    CHECK(sockets.queued_bytes() == 0);
}

TEST_CASE("a peer that pings and never reads gets one PONG at a time") {
    RawReplies m2;
    auto& [replies, context, requests, loop, sockets_ptr] = m2;
    Mongrel2Sockets& sockets = *sockets_ptr;
    int small = 4096;  // the peer's receive buffer: PONGs soon stop fitting
    ::setsockopt(replies.conn.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    replies.write_all(loop, handshake_as("SUB"));
    std::string pings;
    for (int i = 0; i < 20000; ++i) pings += std::string("\x04\x0b\x04PING\x00\x0a" "ctxt", 13);
    replies.write_all(loop, pings);
    for (int i = 0; i < 50; ++i) loop.run_once(2);
    CHECK(sockets.queued_bytes() < 4096);
}

TEST_CASE("a request larger than the 64 MiB bound is skipped, and the next one arrives on the same connection") {
    RawPeer requests;
    zmq::context_t context{1};
    zmq::socket_t replies{context, zmq::socket_type::sub};
    replies.bind("tcp://127.0.0.1:*");
    Loop loop;
    Mongrel2Sockets sockets(loop, requests.endpoint, replies.get(zmq::sockopt::last_endpoint));
    std::vector<std::string> got;
    int lost = 0;
    sockets.set_receiver([&](std::string_view m) { got.emplace_back(m); }, [&](std::string_view) { ++lost; });
    requests.accept_one(loop);
    requests.write_all(loop, handshake_as("PUSH"));
    char head[zmtp::kMaxFrameHead];
    const size_t size = ZmtpConnection::kMaxMessage + 1;
    requests.write_all(loop, std::string_view(head, zmtp::write_frame_head(head, size)));
    std::string chunk(1024 * 1024, 'o');
    for (size_t sent = 0; sent < size; sent += chunk.size())
        requests.write_all(loop, std::string_view(chunk).substr(0, std::min(chunk.size(), size - sent)));
    requests.write_all(loop, std::string_view(head, zmtp::write_frame_head(head, 5)));
    requests.write_all(loop, "after");
    for (int i = 0; i < 500 && got.empty(); ++i) loop.run_once(5);
    CHECK(got == std::vector<std::string>{"after"});
    CHECK(lost == 0);
}

TEST_CASE("a peer that is not Mongrel2's PUSH is never taken for it, and the sockets live on") {
    zmq::context_t context{1};
    zmq::socket_t wrong{context, zmq::socket_type::pull};  // a PULL where a PUSH belongs
    zmq::socket_t replies{context, zmq::socket_type::sub};
    wrong.bind("tcp://127.0.0.1:*");
    replies.bind("tcp://127.0.0.1:*");
    Loop loop;
    Mongrel2Sockets sockets(loop, wrong.get(zmq::sockopt::last_endpoint), replies.get(zmq::sockopt::last_endpoint));
    int lost = 0;
    sockets.set_receiver([](std::string_view) {}, [&](std::string_view) { ++lost; });
    for (int i = 0; i < 30; ++i) loop.run_once(10);
    CHECK(lost == 0);  // never Ready, so never lost
}

TEST_CASE("an endpoint m2bridge cannot connect to is refused when the sockets are made") {
    Loop loop;
    CHECK_THROWS_WITH_AS(Mongrel2Sockets(loop, "udp://127.0.0.1:1", "tcp://127.0.0.1:2"),
                         doctest::Contains("udp://127.0.0.1:1: unknown transport udp (tcp or ipc)"), std::runtime_error);
    CHECK_THROWS_AS(Mongrel2Sockets(loop, "tcp://127.0.0.1", "tcp://127.0.0.1:2"), std::runtime_error);
    CHECK_THROWS_AS(Mongrel2Sockets(loop, "tcp://*:5", "tcp://127.0.0.1:2"), std::runtime_error);
    CHECK_THROWS_AS(Mongrel2Sockets(loop, "ipc://" + std::string(200, 'p'), "tcp://127.0.0.1:2"), std::runtime_error);
}
