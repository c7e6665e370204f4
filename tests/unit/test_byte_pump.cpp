// The byte pump on a real loop with real socketpairs and pipes: the far end
// is played by the test between turns of the loop.
#include <doctest/doctest.h>

#include <cerrno>
#include <fcntl.h>
#include <functional>
#include <string>
#include <utility>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/byte_pump.h"

using namespace m2b;
using namespace std::chrono_literals;

namespace {

struct Recorder : BytePump::Protocol {
    BytePump* pump = nullptr;
    std::string request;
    size_t request_pos = 0;
    std::string response;
    std::string diagnostic;
    int ended = -1;  // read_ended's error, once called
    int send_error = 0;
    int silences = 0;
    int read_calls = 0;
    std::function<void()> on_end;  // what the protocol does at read_ended

    std::string_view unsent() override { return std::string_view(request).substr(request_pos); }
    void sent(size_t n) override { request_pos += n; }
    void send_failed(int error) override { send_error = error; }
    std::span<char> read_space() override { return BytePump::scratch(); }
    void received(size_t n) override {
        ++read_calls;
        response.append(BytePump::scratch().data(), n);
        pump->progress();
    }
    void read_ended(int error) override {
        ended = error;
        if (auto then = std::exchange(on_end, nullptr)) then();
        else pump->stop();
    }
    void diagnostics(std::string_view bytes) override { diagnostic += bytes; }
    void connect_failed(int) override { FAIL("no connect here"); }
    void silent(bool) override {
        ++silences;
        pump->stop();
    }
    void watch_failed(int) override { FAIL("epoll refused"); }
};

struct Pair {
    UniqueFd ours, theirs;
    Pair() {
        int fds[2];
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        ours.reset(fds[0]);
        theirs.reset(fds[1]);
    }
};

std::string drain(int fd) {
    std::string got;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return got;
        got.append(buf, static_cast<size_t>(n));
    }
}

// A pump on a loop, with the recording protocol.
struct Bench {
    Loop loop;
    Recorder protocol;
    BytePump pump;
    explicit Bench(std::chrono::milliseconds timeout = 10s) : pump(loop, protocol, timeout) { protocol.pump = &pump; }
};

// Turns the loop until the protocol hears the end of the response (at most ~200 ms).
void run_until_ended(Loop& loop, const Recorder& protocol) {
    for (int i = 0; i < 20 && protocol.ended < 0; ++i) loop.run_once(10);
}

void turns(Loop& loop, int n) {
    for (int i = 0; i < n; ++i) loop.run_once(0);
}

}  // namespace

TEST_CASE("byte pump: a request larger than the socket buffer goes out as the peer reads, then the response") {
    Bench bench;
    auto& [loop, protocol, pump] = bench;
    for (int i = 0; protocol.request.size() < (1u << 20); ++i) protocol.request += std::to_string(i) + ",";
    Pair pair;
    REQUIRE(pump.start_socket(std::move(pair.ours), BytePump::Connect::Done));
    CHECK(protocol.request_pos < protocol.request.size());  // the buffer filled: the rest waits for EPOLLOUT
    std::string arrived;
    for (int i = 0; i < 1000 && arrived.size() < protocol.request.size(); ++i) {
        arrived += drain(pair.theirs.get());
        loop.run_once(10);
    }
    arrived += drain(pair.theirs.get());
    CHECK(arrived == protocol.request);
    REQUIRE(::write(pair.theirs.get(), "Status: 200\r\n\r\nhello", 20) == 20);
    pair.theirs.reset();
    run_until_ended(loop, protocol);
    CHECK(protocol.response == "Status: 200\r\n\r\nhello");
    CHECK(protocol.ended == 0);
}

TEST_CASE("byte pump: paused reads nothing, even from a peer that closed; resumed reads it all") {
    Bench bench;
    auto& [loop, protocol, pump] = bench;
    Pair pair;
    REQUIRE(pump.start_socket(std::move(pair.ours), BytePump::Connect::Done));
    pump.set_paused(true);
    REQUIRE(::write(pair.theirs.get(), "abc", 3) == 3);
    pair.theirs.reset();  // EPOLLHUP: cannot be masked, so the socket must be out of epoll
    turns(loop, 10);
    CHECK(protocol.read_calls == 0);
    CHECK(protocol.ended == -1);
    pump.set_paused(false);
    run_until_ended(loop, protocol);
    CHECK(protocol.response == "abc");
    CHECK(protocol.ended == 0);
}

TEST_CASE("byte pump: reads a few times per wake-up, so one backend cannot hold the loop") {
    Bench bench;
    auto& [loop, protocol, pump] = bench;
    Pair pair;
    int size = 4 << 20;
    setsockopt(pair.theirs.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    REQUIRE(pump.start_socket(std::move(pair.ours), BytePump::Connect::Done));
    std::string big(1 << 20, 'x');
    size_t written = 0;
    while (written < big.size()) {
        ssize_t n = ::write(pair.theirs.get(), big.data() + written, big.size() - written);
        if (n <= 0) break;
        written += static_cast<size_t>(n);
    }
    loop.run_once(10);
    CHECK(protocol.read_calls > 0);
    CHECK(protocol.read_calls <= 4);
    CHECK(protocol.response.size() < written);
}

TEST_CASE("byte pump: a peer that stops taking the request: send_failed, and the response is still read") {
    Bench bench;
    auto& [loop, protocol, pump] = bench;
    protocol.request = std::string(4 << 20, 'b');
    Pair pair;
    REQUIRE(pump.start_socket(std::move(pair.ours), BytePump::Connect::Done));
    REQUIRE(::write(pair.theirs.get(), "Status: 413\r\n\r\n", 15) == 15);
    shutdown(pair.theirs.get(), SHUT_RD);  // reads nothing more: our writes fail
    turns(loop, 5);
    CHECK(protocol.send_error != 0);
    CHECK(protocol.response == "Status: 413\r\n\r\n");
    pair.theirs.reset();
    run_until_ended(loop, protocol);
    CHECK(protocol.ended >= 0);  // EOF, or ECONNRESET: the peer closed with our bytes unread
}

TEST_CASE("byte pump: a protocol that starts again on a new connection inside a callback") {
    Bench bench;
    auto& [loop, protocol, pump] = bench;
    protocol.request = "again";
    Pair first, second;
    int second_far = second.theirs.get();
    protocol.on_end = [&] {  // a kept connection found closed: retried on a fresh one
        protocol.ended = -1;
        protocol.request_pos = 0;
        REQUIRE(pump.start_socket(std::move(second.ours), BytePump::Connect::Done));
    };
    REQUIRE(pump.start_socket(std::move(first.ours), BytePump::Connect::Done));
    first.theirs.reset();
    turns(loop, 5);
    CHECK(drain(second_far) == "again");
    REQUIRE(::write(second_far, "ok", 2) == 2);
    second.theirs.reset();
    run_until_ended(loop, protocol);
    CHECK(protocol.response == "ok");
    CHECK(protocol.ended == 0);
}

TEST_CASE("byte pump: pipes: the request pipe closes after the body; stderr is read but is not progress") {
    Bench bench(100ms);
    auto& [loop, protocol, pump] = bench;
    protocol.request = "the body";
    int in[2], out[2], err[2];
    REQUIRE(pipe2(in, O_CLOEXEC | O_NONBLOCK) == 0);
    REQUIRE(pipe2(out, O_CLOEXEC | O_NONBLOCK) == 0);
    REQUIRE(pipe2(err, O_CLOEXEC | O_NONBLOCK) == 0);
    UniqueFd script_stdin(in[0]), script_stdout(out[1]), script_stderr(err[1]);
    REQUIRE(pump.start_pipes(UniqueFd(in[1]), UniqueFd(out[0]), UniqueFd(err[0])));
    pump.start_timer();
    char buf[64];
    CHECK(::read(script_stdin.get(), buf, sizeof buf) == 8);
    CHECK(::read(script_stdin.get(), buf, sizeof buf) == 0);  // EOF: our end is closed
    // A script that only talks to stderr is silent: the timer fires.
    for (int i = 0; i < 100 && protocol.silences == 0; ++i) {  // a byte every 10 ms, for up to 1 s
        REQUIRE(::write(script_stderr.get(), "x", 1) == 1);
        loop.run_once(0);
        usleep(10000);
        loop.run_once(0);
    }
    CHECK(protocol.silences == 1);
    CHECK(!protocol.diagnostic.empty());
    CHECK(protocol.response.empty());
}
