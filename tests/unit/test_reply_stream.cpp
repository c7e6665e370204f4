#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "bridge/reply_stream.h"

using namespace m2b;
using namespace std::chrono_literals;

namespace {

// Stands in for the transaction and handler: records what would go to Mongrel2.
struct FakeConnection : ReplyConnection {
    size_t window = SIZE_MAX;  // SIZE_MAX: take everything; else bytes until writable()
    size_t largest_frame = SIZE_MAX;
    std::vector<std::string> messages;
    int handed_over = 0;  // messages given as frames, not copied
    int copied = 0;
    bool paused = false;
    int pause_changes = 0;
    int flushed = 0;
    int stalled = 0;

    size_t send_window() override { return window; }
    size_t frame_limit() override { return largest_frame; }
    void send(std::string_view bytes) override {
        if (!bytes.empty()) ++copied;
        messages.emplace_back(bytes);
        if (window != SIZE_MAX) window -= std::min(window, bytes.size());
    }
    void send(OutFrame frame) override {
        ++handed_over;
        messages.emplace_back(frame.view());
        if (window != SIZE_MAX) window -= std::min(window, frame.size());
    }
    void backend_paused(bool p) override {
        paused = p;
        ++pause_changes;
    }
    void reply_flushed() override { ++flushed; }
    void reply_stalled() override { ++stalled; }

    std::string all() const {
        std::string out;
        for (const auto& m : messages) out += m;
        return out;
    }
};

void run_for(Loop& loop, std::chrono::milliseconds span) {
    auto until = Loop::now() + span;
    while (Loop::now() < until) loop.run_once(2);
}

ReplyLimits limits(size_t buffer, std::chrono::milliseconds send_timeout = 1000ms) {
    ReplyLimits l;
    l.buffer_limit = buffer;
    l.send_timeout = send_timeout;
    l.flush_delay = 20ms;
    return l;
}

ReplyHead text_head() { return ReplyHead{200, "", {{"Content-Type", "text/plain"}}}; }

}  // namespace

TEST_CASE("a small body that ends at once is one message with Content-Length") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024));
    s.begin(text_head(), std::nullopt);
    s.body("hello");
    s.end();
    REQUIRE(conn.messages.size() == 1);
    CHECK(conn.messages[0].find("Content-Length: 5\r\n") != std::string::npos);
    CHECK(conn.messages[0].ends_with("\r\n\r\nhello"));
    CHECK(conn.flushed == 1);
    CHECK(s.state() == ReplyStream::State::Done);
}

TEST_CASE("a body past the buffer limit streams chunked, and the tail never waits for the backend") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024));
    s.begin(text_head(), std::nullopt);
    s.body(std::string(1500, 'a'));
    REQUIRE(s.head_sent());
    size_t before = conn.messages.size();
    s.body("TAIL");
    // The backend says nothing more; the flush timer alone must send the tail.
    run_for(loop, 60ms);
    CHECK(conn.messages.size() > before);
    CHECK(conn.all().find("4\r\nTAIL\r\n") != std::string::npos);
    s.end();
    CHECK(conn.all().ends_with("0\r\n\r\n"));
    CHECK(conn.flushed == 1);
}

TEST_CASE("held bytes never pass the limit by more than one backend read, and the backend is paused") {
    Loop loop;
    FakeConnection conn;
    conn.window = 0;  // a client that reads nothing
    ReplyStream s(loop, conn, ReplyContext{}, limits(4096));
    s.begin(text_head(), std::nullopt);
    for (int i = 0; i < 4 && !conn.paused; ++i) s.body(std::string(1500, 'x'));
    CHECK(conn.paused);
    CHECK(s.buffered() <= 4096 + 1500 + 64);
    // Credits come back: everything goes and the backend may run again.
    conn.window = SIZE_MAX;
    s.writable();
    CHECK(s.buffered() == 0);
    CHECK_FALSE(conn.paused);
}

TEST_CASE("a client that takes nothing for the send timeout is given up") {
    Loop loop;
    FakeConnection conn;
    conn.window = 0;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024, 50ms));
    s.begin(text_head(), std::nullopt);
    s.body("abc");
    s.end();
    run_for(loop, 30ms);
    CHECK(conn.stalled == 0);
    run_for(loop, 60ms);
    CHECK(conn.stalled == 1);
    CHECK(conn.flushed == 0);
}

TEST_CASE("progress under credits keeps the send timeout away") {
    Loop loop;
    FakeConnection conn;
    conn.window = 10;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024, 50ms));
    s.begin(text_head(), std::nullopt);
    s.body(std::string(200, 'y'));
    s.end();
    for (int i = 0; i < 8 && conn.flushed == 0; ++i) {
        run_for(loop, 20ms);
        conn.window = 40;
        s.writable();
    }
    CHECK(conn.stalled == 0);
    CHECK(conn.flushed == 1);
    CHECK(conn.all().ends_with(std::string(200, 'y')));
}

TEST_CASE("HEAD announces the length and sends no body") {
    Loop loop;
    FakeConnection conn;
    ReplyContext head;
    head.head_request = true;
    ReplyStream s(loop, conn, head, limits(1024));
    s.begin(text_head(), std::nullopt);
    s.body(std::string(3000, 'z'));
    s.end();
    REQUIRE(conn.messages.size() == 1);
    CHECK(conn.messages[0].find("Content-Length: 3000\r\n") != std::string::npos);
    CHECK(conn.messages[0].ends_with("\r\n\r\n"));
}

TEST_CASE("a body shorter than the app's Content-Length is a 502 when nothing was sent") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024));
    s.begin(text_head(), 10);
    s.body("short");
    s.end();
    REQUIRE(conn.messages.size() == 1);
    CHECK(conn.messages[0].starts_with("HTTP/1.1 502 "));
}

TEST_CASE("a streamed body longer than the app's Content-Length is cut and the connection closed") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024));
    s.begin(text_head(), 1200);
    s.body(std::string(1500, 'q'));
    s.end();
    std::string all = conn.all();
    CHECK(all.substr(all.find("\r\n\r\n") + 4) == std::string(1200, 'q'));
    CHECK(conn.messages.back().empty());  // Mongrel2's close message
}

TEST_CASE("an error for a client that asked for close is followed by the close message") {
    Loop loop;
    FakeConnection conn;
    ReplyContext ctx;
    ctx.client_wants_close = true;
    ReplyStream s(loop, conn, ctx, limits(1024));
    s.error(503, {{"Retry-After", "1"}});
    REQUIRE(conn.messages.size() == 2);
    CHECK(conn.messages[0].starts_with("HTTP/1.1 503 "));
    CHECK(conn.messages[0].find("Retry-After: 1\r\n") != std::string::npos);
    CHECK(conn.messages[0].find("Connection: close\r\n") != std::string::npos);
    CHECK(conn.messages[1].empty());
    CHECK(conn.flushed == 1);
}

TEST_CASE("abort after the head sends what arrived, then closes") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024));
    s.begin(text_head(), std::nullopt);
    s.body(std::string(1100, 'p'));
    s.body("last");
    s.abort();
    CHECK(conn.all().find("4\r\nlast\r\n") != std::string::npos);
    CHECK(conn.all().find("0\r\n\r\n") == std::string::npos);  // no clean end
    CHECK(conn.messages.back().empty());
}

TEST_CASE("cancel stops every timer and call") {
    Loop loop;
    FakeConnection conn;
    conn.window = 0;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024, 20ms));
    s.begin(text_head(), std::nullopt);
    s.body("abc");
    s.cancel();
    run_for(loop, 60ms);
    CHECK(conn.messages.empty());
    CHECK(conn.stalled == 0);
}

TEST_CASE("a one-message reply is handed over with its head in front of the collected body, not copied") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024 * 1024));
    s.begin(text_head(), std::nullopt);
    s.body("hello, ");
    s.body("world");
    s.end();
    REQUIRE(conn.messages.size() == 1);
    CHECK(conn.handed_over == 1);
    CHECK(conn.copied == 0);
    CHECK(conn.messages[0].starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(conn.messages[0].ends_with("Content-Length: 12\r\n\r\nhello, world"));
}

TEST_CASE("a collected body that goes on streaming is framed where it lies") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024 * 1024));
    s.begin(text_head(), std::nullopt);
    s.body("first");
    run_for(loop, 40ms);  // the flush delay: the head and the first chunk go together
    REQUIRE(conn.messages.size() == 1);
    CHECK(conn.messages[0].find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(conn.messages[0].ends_with("\r\n\r\n5\r\nfirst\r\n"));
    s.body("second");
    s.end();
    CHECK(conn.messages.back() == "6\r\nsecond\r\n0\r\n\r\n");
    CHECK(conn.copied == 0);
    CHECK(conn.flushed == 1);
}

TEST_CASE("a message cut at the window is copied up to the cut, and the rest is handed over whole") {
    Loop loop;
    FakeConnection conn;
    conn.window = 1000;
    ReplyStream s(loop, conn, ReplyContext{}, limits(2048));
    s.begin(text_head(), 3000);
    s.body(std::string(3000, 'a'));  // past the limit: streams at once
    s.end();
    REQUIRE(conn.messages.size() == 1);
    CHECK(conn.copied == 1);
    CHECK(conn.messages[0].size() == 1000);
    conn.window = SIZE_MAX;
    s.writable();
    CHECK(conn.handed_over == 1);
    CHECK(conn.copied == 1);
    std::string all = conn.all();
    CHECK(all.find("Content-Length: 3000\r\n") != std::string::npos);
    CHECK(all.ends_with("\r\n\r\n" + std::string(3000, 'a')));
    CHECK(conn.flushed == 1);
}

TEST_CASE("messages are built no larger than the connection's frame limit, so each fits its window whole") {
    Loop loop;
    FakeConnection conn;
    conn.largest_frame = 4096;  // a download-credit window
    ReplyStream s(loop, conn, ReplyContext{}, limits(64 * 1024));
    s.begin(text_head(), 20000);
    s.body(std::string(20000, 'b'));
    run_for(loop, 40ms);
    s.end();
    CHECK(conn.messages.size() >= 5);
    for (const auto& m : conn.messages) CHECK(m.size() <= 4096);
    CHECK(conn.copied == 0);
    CHECK(conn.all().ends_with("\r\n\r\n" + std::string(20000, 'b')));
}

TEST_CASE("a collected body longer than the app's Content-Length is cut when streaming starts, and the connection closes") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(1024));
    s.begin(text_head(), 10);
    s.body(std::string(500, 'x'));
    run_for(loop, 40ms);  // the flush delay starts the stream with what was collected
    s.end();
    std::string all = conn.all();
    CHECK(all.find("Content-Length: 10\r\n") != std::string::npos);
    CHECK(all.ends_with("\r\n\r\n" + std::string(10, 'x')));
    REQUIRE_FALSE(conn.messages.empty());
    CHECK(conn.messages.back().empty());  // the close: the app lied about its length
    CHECK(conn.flushed == 1);
}

TEST_CASE("a head larger than the room left for it still goes in front of the collected body") {
    Loop loop;
    FakeConnection conn;
    ReplyStream s(loop, conn, ReplyContext{}, limits(64 * 1024));
    ReplyHead head = text_head();
    head.headers.emplace_back("X-Big", std::string(6000, 'h'));
    s.begin(head, std::nullopt);
    s.body("body");
    s.end();
    std::string all = conn.all();
    CHECK(all.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(all.find("X-Big: " + std::string(6000, 'h') + "\r\n") != std::string::npos);
    CHECK(all.ends_with("Content-Length: 4\r\n\r\nbody"));
    CHECK(conn.flushed == 1);
}
