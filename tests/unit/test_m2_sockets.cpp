// Mongrel2Sockets against real ZeroMQ peers on loopback TCP, as Mongrel2 binds
// them: a PUSH for requests and a SUB for replies. The SUB here reads only when
// the test says so, with a high-water mark of one message, so that what the
// bridge sent stays in ZeroMQ on the bridge's side until it does.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <zmq.hpp>

#include "base/loop.h"
#include "bridge/m2_sockets.h"

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

    std::string receive() {
        zmq::message_t m;
        if (!replies.recv(m)) return "";
        return m.to_string();
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
            while (m2.replies.recv(m)) {
            }
            m2.replies.set(zmq::sockopt::rcvtimeo, 5000);
            return;
        }
    }
    FAIL("the SUB never received a probe");
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
    CHECK(sockets.queued_bytes() <= frames * (frame + 1024));  // each block and libzmq's record

    bool woken = false;
    sockets.when_queued_below(frame, [&] { woken = true; });
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (std::chrono::steady_clock::now() < until) loop.run_once(10);
    CHECK_FALSE(woken);
    CHECK(sockets.queued_bytes() > 16 * frame);

    for (int i = 0; i < frames; ++i) {
        std::string got = m2.receive();
        REQUIRE(got.size() == frame);
        CHECK(got.compare(0, 10, "0123456789") == 0);
        loop.run_once(0);
    }
    for (int i = 0; i < 500 && !woken; ++i) loop.run_once(10);
    CHECK(woken);
    CHECK(sockets.queued_bytes() <= frame);
}

TEST_CASE("small replies given as bytes are not counted, and a waiter whose mark is met already wakes on the next turn") {
    FakeMongrel2 m2;
    Loop loop;
    Mongrel2Sockets sockets(loop, m2.send_spec, m2.recv_spec);
    wait_until_subscribed(loop, sockets, m2);

    sockets.send("0123456789", std::string(1000, 'y'));
    CHECK(sockets.queued_bytes() == 0);
    CHECK(m2.receive().size() == 1010);

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
        std::string got = m2.receive();
        REQUIRE(got.size() == frame);
        CHECK(got.compare(0, 12, "0123456789zz") == 0);
    }

    // A sender longer than the room in front: the frame is copied, not lost.
    std::string sender(200, 's');
    OutFrame tight(OutFrame::kEnvelopeRoom, 16);
    tight.append("body");
    sockets.send(sender + " 1:7, ", std::move(tight));
    CHECK(m2.receive() == sender + " 1:7, body");

    for (int i = 0; i < 500 && sockets.queued_bytes() > 0; ++i) loop.run_once(2);
    CHECK(sockets.queued_bytes() == 0);
}
