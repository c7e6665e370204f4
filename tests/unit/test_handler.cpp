// The handler's message path against a fake gateway and a recorder in place
// of the ZeroMQ sockets: pipelining, limits, holds, deliver, restarts.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bridge/handler.h"
#include "tests/support/fakes.h"

using namespace m2b;
using namespace m2b::testing;
using namespace std::chrono_literals;

namespace {

std::string message(uint64_t conn, std::string_view path, std::string extra_json = "", std::string_view method = "GET") {
    std::string headers = "{\"PATH\":\"" + std::string(path) + "\",\"METHOD\":\"" + std::string(method) + "\",\"VERSION\":\"HTTP/1.1\",\"URI\":\"" +
                          std::string(path) + "\",\"PATTERN\":\"/\",\"host\":\"localhost\"" + extra_json + "}";
    return "front " + std::to_string(conn) + " " + std::string(path) + " " + std::to_string(headers.size()) + ":" +
           headers + ",0:,";
}

std::string disconnect(uint64_t conn) {
    return "front " + std::to_string(conn) + " @* 17:{\"METHOD\":\"JSON\"},21:{\"type\":\"disconnect\"},";
}

struct Bench {
    std::filesystem::path root;
    HandlerConfig config;
    Loop loop;
    FakeGateway gateway;
    Recorder link;
    std::unique_ptr<Handler> handler;

    explicit Bench(void (*tune)(HandlerConfig&) = nullptr) {
        char tmpl[] = "/tmp/m2b-unit-XXXXXX";
        root = mkdtemp(tmpl);
        std::ofstream(root / "app.php") << "<?php";
        config.document_root = root.string();
        config.pacing_burst = 1e9;  // pacing is for Mongrel2's sake; here it only slows the test
        if (tune) tune(config);
        handler = std::make_unique<Handler>(loop, config, gateway, link);
    }
    ~Bench() {
        handler.reset();
        loop.run_posted();
        std::filesystem::remove_all(root);
    }
    void feed(const std::string& m) { handler->on_message(m); }
    void turns(int n = 5) {
        for (int i = 0; i < n; ++i) loop.run_once(0);
    }
    FakeGateway::Live* running(uint64_t conn) { return gateway.running(conn); }
};

constexpr std::string_view kOk = "Content-Type: text/plain\r\n\r\nok";

}  // namespace

TEST_CASE("twenty thousand pipelined 404s behind a slow request are answered in order, without recursion") {
    Bench b([](HandlerConfig& c) { c.max_pipelined = 100000; });
    b.feed(message(7, "/app.php"));
    for (int i = 0; i < 20000; ++i) b.feed(message(7, "/missing"));
    b.turns();
    REQUIRE(b.running(7));
    b.running(7)->answer(kOk);
    for (int i = 0; i < 200 && b.link.to(7).size() < 20001; ++i) b.turns(1);
    auto replies = b.link.to(7);
    REQUIRE(replies.size() == 20001);
    CHECK(replies[0].starts_with("HTTP/1.1 200 "));
    CHECK(replies[1].starts_with("HTTP/1.1 404 "));
    CHECK(replies[20000].starts_with("HTTP/1.1 404 "));
    CHECK(b.handler->connections() == 0);
}

TEST_CASE("past --max-pipelined the connection gets 503 with close and later requests are dropped") {
    Bench b([](HandlerConfig& c) { c.max_pipelined = 5; });
    b.feed(message(3, "/app.php"));
    for (int i = 0; i < 10; ++i) b.feed(message(3, "/missing"));
    b.turns();
    b.running(3)->answer(kOk);
    b.turns(40);
    auto replies = b.link.to(3);
    REQUIRE(replies.size() == 8);  // 200, five 404s, 503, close
    CHECK(replies[0].starts_with("HTTP/1.1 200 "));
    for (int i = 1; i <= 5; ++i) CHECK(replies[i].starts_with("HTTP/1.1 404 "));
    CHECK(replies[6].starts_with("HTTP/1.1 503 "));
    CHECK(replies[6].find("Connection: close\r\n") != std::string::npos);
    CHECK(replies[7].empty());
}

TEST_CASE("the backend slot is free as soon as the backend is done, whatever the client reads") {
    Bench b([](HandlerConfig& c) {
        c.max_requests = 1;
        c.buffer_size = 16 * 1024;
    });
    // Flow-controlled: the window (2 KiB) is spent at once and no credits ever come.
    b.feed(message(1, "/app.php", ",\"DOWNLOAD_CREDITS\":\"2048\""));
    b.feed(message(2, "/app.php"));
    b.turns();
    REQUIRE(b.gateway.started == 1);
    b.running(1)->answer("Content-Type: text/plain\r\n\r\n" + std::string(8000, 'x'));
    b.turns();
    CHECK(b.gateway.started == 2);  // the second client got the slot
    CHECK(b.handler->in_flight() == 1);
}

TEST_CASE("a paused backend and a client that reads nothing release everything after the send timeout") {
    Bench b([](HandlerConfig& c) {
        c.max_requests = 1;
        c.buffer_size = 16 * 1024;
        c.send_timeout_seconds = 0.05;
    });
    b.feed(message(1, "/app.php", ",\"DOWNLOAD_CREDITS\":\"2048\""));
    b.turns();
    auto* e = b.running(1);
    e->sink.on_stdout("Content-Type: text/plain\r\n\r\n" + std::string(40000, 'x'));
    CHECK(e->paused);
    auto until = Loop::now() + 150ms;
    while (Loop::now() < until) b.loop.run_once(5);
    CHECK(b.gateway.live.empty());  // the exchange was cancelled and destroyed
    CHECK(b.handler->in_flight() == 0);
    CHECK(b.handler->connections() == 0);
    bool cancelled = false;
    for (const auto& r : b.link.replies) cancelled |= r.body.find("6:cancel") != std::string::npos;
    CHECK(cancelled);
}

TEST_CASE("deliver: duplicates once, never into a response in progress, held clients released") {
    Bench b;
    b.feed(message(5, "/app.php"));  // will hold
    b.feed(message(6, "/app.php"));  // streams
    b.turns();
    REQUIRE(b.gateway.live.size() == 2);
    b.running(5)->answer("X-Mongrel2-Deliver:\r\n\r\n");
    auto* streaming = b.running(6);
    streaming->sink.on_stdout("Content-Type: text/plain\r\n\r\n" + std::string(2 * 1024 * 1024, 's'));
    b.feed(message(5, "/app.php"));  // pipelined behind the hold: must wait for the delivery
    b.feed(message(8, "/app.php"));
    b.turns();
    CHECK(b.gateway.started == 3);
    size_t six_before = b.link.to(6).size();
    b.running(8)->answer("X-Mongrel2-Deliver: 5 6 5 8 5\r\nContent-Type: text/plain\r\n\r\nnews");
    b.turns();
    auto five = b.link.to(5);
    REQUIRE(five.size() == 1);
    CHECK(five[0].ends_with("news"));
    CHECK(b.link.to(6).size() == six_before);  // the stream was not touched
    CHECK(b.link.to(8).size() == 1);
    // Now the request pipelined behind the long-poll starts.
    CHECK(b.gateway.started == 4);
}

TEST_CASE("replies wait while ZeroMQ holds more than 8 MiB for Mongrel2, and go on when it holds half") {
    Bench b;
    b.feed(message(1, "/app.php"));
    b.feed(message(2, "/app.php"));
    b.turns();
    b.link.queued = 9 * 1024 * 1024;  // a Mongrel2 that stopped reading
    b.running(1)->answer(kOk);
    b.running(2)->answer(kOk);
    b.turns(20);
    CHECK(b.link.to(1).empty());
    CHECK(b.link.to(2).empty());
    REQUIRE(b.link.waiter);
    CHECK(b.link.waiter_mark == 4 * 1024 * 1024);

    b.link.queued = 4 * 1024 * 1024;
    auto wake = std::move(b.link.waiter);
    b.link.waiter = nullptr;
    wake();
    b.turns();
    REQUIRE(b.link.to(1).size() == 1);
    REQUIRE(b.link.to(2).size() == 1);
    CHECK(b.link.to(1)[0].ends_with("\r\n\r\nok"));
    CHECK(b.link.to(2)[0].ends_with("\r\n\r\nok"));
    CHECK_FALSE(b.link.waiter);
}

TEST_CASE("replies that wait for ZeroMQ go on in the order they began to wait, and the wait is not a stall") {
    Bench b([](HandlerConfig& c) {
        c.send_timeout_seconds = 0.05;
        c.max_requests = 64;
    });
    for (uint64_t conn = 1; conn <= 20; ++conn) b.feed(message(conn, "/app.php"));
    b.turns();
    b.link.queued = 9 * 1024 * 1024;
    for (uint64_t conn = 20; conn >= 1; --conn) {  // answered last to first
        b.running(conn)->answer(kOk);
        b.turns(1);
    }
    auto until = Loop::now() + 200ms;  // four send timeouts
    while (Loop::now() < until) b.loop.run_once(5);
    for (uint64_t conn = 1; conn <= 20; ++conn) CHECK(b.link.to(conn).empty());  // not closed as stalled
    REQUIRE(b.link.waiter);

    b.link.queued = 0;
    auto wake = std::move(b.link.waiter);
    b.link.waiter = nullptr;
    wake();
    b.turns();
    std::vector<uint64_t> order;
    for (const auto& r : b.link.replies)
        if (r.body.ends_with("\r\n\r\nok")) order.push_back(r.ids.at(0));
    REQUIRE(order.size() == 20);
    for (size_t i = 0; i < order.size(); ++i) CHECK(order[i] == 20 - i);
}

TEST_CASE("a delivery's fan-out waits while ZeroMQ holds more than 8 MiB for Mongrel2") {
    Bench b;
    b.feed(message(1, "/app.php"));
    b.feed(message(1500, "/app.php"));  // will hold; named late in the fan-out
    b.turns();
    b.running(1500)->answer("X-Mongrel2-Deliver:\r\n\r\n");
    b.turns();
    std::string ids = " 1";  // the speaker, then 1000 others: 8 messages of ≤ 128 ids
    for (int id = 1000; id < 2000; ++id) ids += " " + std::to_string(id);
    b.link.queued = 9 * 1024 * 1024;
    b.running(1)->answer("X-Mongrel2-Deliver:" + ids + "\r\nContent-Type: text/plain\r\n\r\nnews");
    b.turns();
    auto messages = [&](std::string_view body) {
        return std::count_if(b.link.replies.begin(), b.link.replies.end(),
                             [&](const Recorder::Reply& r) { return r.body.ends_with(body); });
    };
    CHECK(messages("news") == 1);  // the first goes out at once, the speaker's copy in it; the rest wait
    CHECK(b.link.to(1).size() == 1);
    REQUIRE(b.link.waiter);
    CHECK(b.link.waiter_mark == 4 * 1024 * 1024);
    b.turns(20);
    CHECK(messages("news") == 1);

    SUBCASE("a second delivery skips the held client the first one still has to reach") {
        b.feed(message(2, "/app.php"));
        b.turns();
        b.running(2)->answer("X-Mongrel2-Deliver: 2 1500\r\nContent-Type: text/plain\r\n\r\nlater");
        b.turns();
        CHECK(b.link.to(2).size() == 1);
        CHECK(b.link.to(1500).empty());
    }
    SUBCASE("a shutdown waits for the fan-out") {
        bool drained = false;
        b.handler->shutdown([&] { drained = true; });
        b.turns();
        CHECK_FALSE(drained);
        b.link.queued = 0;
        auto wake = std::move(b.link.waiter);
        wake();
        b.turns();
        CHECK(drained);
    }

    b.link.queued = 0;
    if (b.link.waiter) {
        auto wake = std::move(b.link.waiter);
        wake();
    }
    b.turns();
    CHECK(messages("news") == 8);
    std::set<uint64_t> reached;
    for (const auto& r : b.link.replies)
        if (r.body.ends_with("news")) reached.insert(r.ids.begin(), r.ids.end());
    CHECK(reached.size() == 1001);
    auto held = b.link.to(1500);
    REQUIRE(held.size() == 1);  // one answer to its long-poll: the first delivery's
    CHECK(held[0].ends_with("news"));
}

TEST_CASE("a held HEAD request gets the delivered head without the body") {
    Bench b;
    b.feed(message(9, "/app.php", "", "HEAD"));
    b.turns();
    REQUIRE(b.running(9));
    b.running(9)->answer("X-Mongrel2-Deliver:\r\n\r\n");
    b.feed(message(4, "/app.php"));
    b.turns();
    b.running(4)->answer("X-Mongrel2-Deliver: 9 4\r\nContent-Type: text/plain\r\n\r\nbody!");
    b.turns();
    auto nine = b.link.to(9);
    REQUIRE(nine.size() == 1);
    CHECK(nine[0].find("Content-Length: 5\r\n") != std::string::npos);
    CHECK(nine[0].ends_with("\r\n\r\n"));
    CHECK(b.link.to(4)[0].ends_with("body!"));
}

TEST_CASE("when Mongrel2 goes away every request of the old server is dropped") {
    Bench b;
    b.feed(message(3, "/app.php"));
    b.turns();
    auto* old = b.running(3);
    REQUIRE(old);
    b.handler->on_server_lost("test");
    CHECK(old->cancelled);
    CHECK(b.handler->connections() == 0);
    b.turns();
    // The new server's connection 3 is a stranger: only its own request is answered.
    b.feed(message(3, "/app.php"));
    b.turns();
    REQUIRE(b.running(3));
    b.running(3)->answer(kOk);
    b.turns();
    CHECK(b.link.to(3).size() == 1);
}

TEST_CASE("a disconnect cancels the connection's requests and frees the slot") {
    Bench b([](HandlerConfig& c) { c.max_requests = 1; });
    b.feed(message(1, "/app.php"));
    b.feed(message(2, "/app.php"));
    b.turns();
    REQUIRE(b.gateway.started == 1);
    b.feed(disconnect(1));
    b.turns();
    CHECK(b.gateway.started == 2);
    CHECK(b.link.to(1).empty());
}

TEST_CASE("without credits, replies to one connection are paced") {
    Bench b([](HandlerConfig& c) {
        c.pacing_burst = 2;
        c.pacing_interval = 20ms;
    });
    for (int i = 0; i < 6; ++i) b.feed(message(3, "/missing"));
    b.turns();
    CHECK(b.link.to(3).size() == 2);
    auto until = Loop::now() + 200ms;
    while (Loop::now() < until && b.link.to(3).size() < 6) b.loop.run_once(5);
    CHECK(b.link.to(3).size() == 6);
}
