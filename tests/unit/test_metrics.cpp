#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "base/loop.h"
#include "bridge/metrics.h"
#include "bridge/metrics_server.h"

using namespace m2b;
using namespace std::chrono_literals;

namespace {

// Every line of `text` that starts with `prefix`, in order.
std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(start, end - start);
        if (line.rfind(prefix, 0) == 0) out.push_back(line);
        start = end + 1;
    }
    return out;
}

// A plain blocking client socket connected to 127.0.0.1:port; -1 on failure.
// A `receive_buffer` size makes it a slow reader whatever the kernel's autotuning.
int connect_to(uint16_t port, int receive_buffer = 0) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (receive_buffer > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    timeval timeout{5, 0};  // a test that hangs fails instead
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Everything the server sends until it closes; "<error: ...>" if reading fails.
std::string read_to_end(int fd) {
    std::string out;
    char buffer[65536];
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof buffer, 0);
        if (n > 0) {
            out.append(buffer, static_cast<size_t>(n));
            continue;
        }
        if (n == 0) return out;
        if (errno == EINTR) continue;
        return out + "<error: " + strerror(errno) + ">";
    }
}

// Runs `client` in a thread while this thread turns the loop, as the daemon would.
void with_loop_running(Loop& loop, const std::function<void()>& client) {
    std::atomic<bool> done{false};
    std::thread thread([&] {
        client();
        done = true;
    });
    auto give_up = Loop::now() + 10s;
    while (!done && Loop::now() < give_up) loop.run_once(10);
    thread.join();
    loop.run_once(0);
}

// Sends `request` on a new connection and returns the whole response, read
// after `pause` (time for the server to have answered and closed).
std::string exchange(Loop& loop, uint16_t port, const std::string& request,
                     std::chrono::milliseconds pause = 0ms) {
    std::string response;
    with_loop_running(loop, [&] {
        int fd = connect_to(port);
        if (fd < 0) {
            response = "<connect failed>";
            return;
        }
        size_t sent = 0;
        while (sent < request.size()) {
            ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) break;
            sent += static_cast<size_t>(n);
        }
        std::this_thread::sleep_for(pause);
        response = read_to_end(fd);
        close(fd);
    });
    return response;
}

std::string header_value(const std::string& response, const std::string& name) {
    size_t at = response.find("\r\n" + name + ": ");
    if (at == std::string::npos) return "<absent>";
    at += name.size() + 4;
    return response.substr(at, response.find("\r\n", at) - at);
}

std::string body_of(const std::string& response) {
    size_t at = response.find("\r\n\r\n");
    return at == std::string::npos ? "<no head end>" : response.substr(at + 4);
}

// True once the server has closed `fd` (recv sees the end), without waiting.
bool closed_by_server(int fd) {
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

}  // namespace

TEST_CASE("metrics: observe puts a latency in the first bucket whose bound is not below it") {
    HandlerStats stats;
    stats.observe(200, 0.005);   // on a bound: that bucket (le is "less or equal")
    stats.observe(200, 0.0051);  // just above: the next
    stats.observe(502, 61);      // above the last finite bound: +Inf
    stats.observe(0, -3);        // a clock going backwards counts as 0 s
    CHECK(stats.latency_buckets[0] == 2);
    CHECK(stats.latency_buckets[1] == 1);
    CHECK(stats.latency_buckets[13] == 1);
    CHECK(stats.latency_count == 4);
    CHECK(stats.latency_sum == doctest::Approx(0.005 + 0.0051 + 61));
    CHECK(stats.requests_by_status == std::map<int, uint64_t>{{0, 1}, {200, 2}, {502, 1}});
}

TEST_CASE("metrics: the page for one handler, line by line") {
    HandlerStats php;
    php.name = "php";
    php.backend = "fastcgi";
    php.observe(200, 0.003);
    php.observe(200, 0.2);
    php.observe(404, 0.75);
    php.observe(0, 100);
    HandlerGauges gauges{3, 7, 2, 1};
    std::string page = render_prometheus({{&php, gauges}});

    CHECK(page ==
          "# HELP m2bridge_requests_total Requests finished, by HTTP status sent (0: none was sent).\n"
          "# TYPE m2bridge_requests_total counter\n"
          "m2bridge_requests_total{handler=\"php\",backend=\"fastcgi\",status=\"0\"} 1\n"
          "m2bridge_requests_total{handler=\"php\",backend=\"fastcgi\",status=\"200\"} 2\n"
          "m2bridge_requests_total{handler=\"php\",backend=\"fastcgi\",status=\"404\"} 1\n"
          "# HELP m2bridge_requests_in_flight Requests being answered by the backend now.\n"
          "# TYPE m2bridge_requests_in_flight gauge\n"
          "m2bridge_requests_in_flight{handler=\"php\"} 3\n"
          "# HELP m2bridge_requests_queued Requests waiting for a free backend slot.\n"
          "# TYPE m2bridge_requests_queued gauge\n"
          "m2bridge_requests_queued{handler=\"php\"} 7\n"
          "# HELP m2bridge_backend_connections Open connections to the backend (FastCGI) or running CGI programs.\n"
          "# TYPE m2bridge_backend_connections gauge\n"
          "m2bridge_backend_connections{handler=\"php\"} 2\n"
          "# HELP m2bridge_backend_restarts_total Spawned backend processes restarted after they exited.\n"
          "# TYPE m2bridge_backend_restarts_total counter\n"
          "m2bridge_backend_restarts_total{handler=\"php\"} 1\n"
          "# HELP m2bridge_request_duration_seconds Time from a request's arrival to the end of its reply.\n"
          "# TYPE m2bridge_request_duration_seconds histogram\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.005\"} 1\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.01\"} 1\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.025\"} 1\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.05\"} 1\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.1\"} 1\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.25\"} 2\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"0.5\"} 2\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"1\"} 3\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"2.5\"} 3\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"5\"} 3\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"10\"} 3\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"30\"} 3\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"60\"} 3\n"
          "m2bridge_request_duration_seconds_bucket{handler=\"php\",le=\"+Inf\"} 4\n"
          "m2bridge_request_duration_seconds_sum{handler=\"php\"} 100.953\n"
          "m2bridge_request_duration_seconds_count{handler=\"php\"} 4\n");
}

TEST_CASE("metrics: two handlers share one HELP and TYPE per family; label values are escaped") {
    HandlerStats plain, odd;
    plain.name = "plain";
    plain.backend = "cgi";
    odd.name = "a\"b\\c\nd";
    odd.backend = "spawn";
    odd.observe(503, 0.01);
    std::string page = render_prometheus({{&plain, HandlerGauges{}}, {&odd, HandlerGauges{0, 0, 4, 9}}});

    for (const char* family : {"m2bridge_requests_total", "m2bridge_requests_in_flight", "m2bridge_requests_queued",
                               "m2bridge_backend_connections", "m2bridge_backend_restarts_total",
                               "m2bridge_request_duration_seconds"}) {
        CAPTURE(family);
        CHECK(lines_starting(page, std::string("# HELP ") + family + " ").size() == 1);
        CHECK(lines_starting(page, std::string("# TYPE ") + family + " ").size() == 1);
    }
    // A handler with no finished request has no requests_total series yet.
    CHECK(lines_starting(page, "m2bridge_requests_total{") ==
          std::vector<std::string>{
              "m2bridge_requests_total{handler=\"a\\\"b\\\\c\\nd\",backend=\"spawn\",status=\"503\"} 1"});
    CHECK(lines_starting(page, "m2bridge_backend_restarts_total{") ==
          std::vector<std::string>{"m2bridge_backend_restarts_total{handler=\"plain\"} 0",
                                   "m2bridge_backend_restarts_total{handler=\"a\\\"b\\\\c\\nd\"} 9"});
    CHECK(lines_starting(page, "m2bridge_request_duration_seconds_bucket{handler=\"plain\"").size() == 14);
    CHECK(lines_starting(page, "m2bridge_request_duration_seconds_count{") ==
          std::vector<std::string>{"m2bridge_request_duration_seconds_count{handler=\"plain\"} 0",
                                   "m2bridge_request_duration_seconds_count{handler=\"a\\\"b\\\\c\\nd\"} 1"});
    // Every line ends where it should: the raw newline in the name was escaped.
    CHECK(page.find("d\"") != std::string::npos);
    CHECK(page.find("c\nd") == std::string::npos);
}

TEST_CASE("metrics server: GET /metrics is the rendered page; HEAD its head; other paths 404; junk 400") {
    Loop loop;
    int renders = 0;
    MetricsServer server(loop, [&] {
        ++renders;
        return std::string("m2bridge_requests_in_flight{handler=\"x\"} 1\n");
    });
    REQUIRE(server.listen("127.0.0.1:0") == "");
    REQUIRE(server.port() != 0);

    std::string response = exchange(loop, server.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(response.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(header_value(response, "Content-Type") == "text/plain; version=0.0.4");
    CHECK(header_value(response, "Content-Length") == "43");
    CHECK(header_value(response, "Connection") == "close");
    CHECK(body_of(response) == "m2bridge_requests_in_flight{handler=\"x\"} 1\n");
    CHECK(renders == 1);

    response = exchange(loop, server.port(), "HEAD /metrics?name=x HTTP/1.0\r\n\r\n");
    CHECK(response.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(header_value(response, "Content-Length") == "43");
    CHECK(body_of(response) == "");

    response = exchange(loop, server.port(), "GET /metricsx HTTP/1.0\r\n\r\n");
    CHECK(response.rfind("HTTP/1.0 404 Not Found\r\n", 0) == 0);
    response = exchange(loop, server.port(), "GET / HTTP/1.0\r\n\r\n");
    CHECK(response.rfind("HTTP/1.0 404 Not Found\r\n", 0) == 0);

    response = exchange(loop, server.port(), "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(response.rfind("HTTP/1.0 405 Method Not Allowed\r\n", 0) == 0);
    CHECK(header_value(response, "Allow") == "GET, HEAD");

    for (const char* junk : {"HELLO\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n",
                             "GET  /metrics HTTP/1.0\r\n\r\n", "\r\n\r\n"}) {
        CAPTURE(junk);
        response = exchange(loop, server.port(), junk);
        CHECK(response.rfind("HTTP/1.0 400 Bad Request\r\n", 0) == 0);
    }
    // 9 KiB without the blank line: refused once 8 KiB are read, and the reply
    // still reaches a client that reads late, although it sent more than the
    // server read (closing with unread bytes would reset the connection and
    // destroy the reply).
    response = exchange(loop, server.port(), "GET /metrics HTTP/1.0\r\nX: " + std::string(9 * 1024, 'a'), 200ms);
    CHECK(response.rfind("HTTP/1.0 400 Bad Request\r\n", 0) == 0);
    CHECK(renders == 2);

    loop.run_once(0);
    CHECK(server.connection_count() == 0);  // every client closed, and so did the server
}

TEST_CASE("metrics server: a large page arrives whole even when the client sent bytes the server never read") {
    Loop loop;
    std::string page(16 << 20, 'x');  // more than socket buffers hold: it goes out over several turns
    MetricsServer server(loop, [&] { return page; });
    REQUIRE(server.listen("127.0.0.1:0") == "");
    // Bytes sent after the head, while the reply goes out, are never read as a
    // request: closing with them unread would reset the connection and drop
    // the tail of the reply still in the server's socket buffer.
    std::string response;
    with_loop_running(loop, [&] {
        int fd = connect_to(server.port(), 65536);
        if (fd < 0) return;
        send(fd, "GET /metrics HTTP/1.0\r\n\r\n", 25, MSG_NOSIGNAL);
        std::this_thread::sleep_for(50ms);  // the server has read the head and is writing
        std::string late(1000, 'j');
        send(fd, late.data(), late.size(), MSG_NOSIGNAL);
        response = read_to_end(fd);
        close(fd);
    });
    CHECK(response.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(header_value(response, "Content-Length") == std::to_string(page.size()));
    CHECK(body_of(response).size() == page.size());
    CHECK((body_of(response) == page));  // not decomposed: no 16 MiB in a failure report
}

TEST_CASE("metrics server: idle connections beyond the limit push out the oldest, so a scrape still succeeds") {
    Loop loop;
    MetricsServer server(loop, [] { return std::string("up 1\n"); });
    REQUIRE(server.listen("127.0.0.1:0") == "");

    // 33 clients connect and say nothing; only 32 may be held.
    std::vector<int> idle;
    for (int i = 0; i < 33; ++i) {
        int fd = connect_to(server.port());
        REQUIRE(fd >= 0);
        idle.push_back(fd);
    }
    for (int turn = 0; turn < 20; ++turn) {
        loop.run_once(10);
        CHECK(server.connection_count() <= 32);
    }
    CHECK(server.connection_count() == 32);
    CHECK(closed_by_server(idle[0]));  // the oldest
    for (size_t i = 1; i < idle.size(); ++i) CHECK_FALSE(closed_by_server(idle[i]));

    // The 34th connection, a scrape, is answered.
    std::string response = exchange(loop, server.port(), "GET /metrics HTTP/1.0\r\n\r\n");
    CHECK(response.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(body_of(response) == "up 1\n");
    CHECK(server.connection_count() <= 32);
    CHECK(closed_by_server(idle[1]));  // made room for it
    CHECK_FALSE(closed_by_server(idle[2]));
    for (int fd : idle) close(fd);
}

TEST_CASE("metrics server: a connection is closed at its deadline, whether it stalls or never reads the reply") {
    Loop loop;
    std::string big(4 << 20, 'x');  // far more than socket buffers hold
    MetricsServer server(loop, [&] { return big; }, MetricsLimits{32, 8192, 300ms});
    REQUIRE(server.listen("127.0.0.1:0") == "");

    int stalled = connect_to(server.port());
    int not_reading = connect_to(server.port());
    REQUIRE(stalled >= 0);
    REQUIRE(not_reading >= 0);
    REQUIRE(send(stalled, "GET /metr", 9, 0) == 9);
    REQUIRE(send(not_reading, "GET /metrics HTTP/1.0\r\n\r\n", 25, 0) == 25);

    auto start = Loop::now();
    auto longest_turn = 0ms;
    while (server.connection_count() < 2 && Loop::now() - start < 1s) loop.run_once(10);
    CHECK(server.connection_count() == 2);
    while (server.connection_count() > 0 && Loop::now() - start < 3s) {
        auto before = Loop::now();
        loop.run_once(50);
        longest_turn = std::max(longest_turn, std::chrono::duration_cast<std::chrono::milliseconds>(Loop::now() - before));
    }
    auto elapsed = Loop::now() - start;
    CHECK(server.connection_count() == 0);
    CHECK(elapsed >= 290ms);  // not before the deadline; after it, the count above says they went
    // A blocking write to the non-reader would hold the loop for good; the
    // bound is loose so that a loaded machine cannot fail it.
    CHECK(longest_turn < 1s);

    CHECK(closed_by_server(stalled));
    // The non-reader got part of the reply, then the end (or a reset, its buffer being full).
    std::string got = read_to_end(not_reading);
    CHECK(got.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(got.size() < big.size());
    close(stalled);
    close(not_reading);
}

TEST_CASE("metrics server: addresses") {
    Loop loop;
    MetricsServer server(loop, [] { return std::string("up 1\n"); });

    std::string error = server.listen("unix:/tmp/m2b-metrics.sock");
    CHECK(error.find("unix:/tmp/m2b-metrics.sock") != std::string::npos);
    CHECK(server.listen("127.0.0.1:65536").find("127.0.0.1:65536") != std::string::npos);
    CHECK(server.listen("127.0.0.1:http") != "");
    CHECK(server.listen("nonsense") != "");
    CHECK(server.listen("") != "");
    CHECK(server.port() == 0);

    // "PORT" alone is 127.0.0.1:PORT.
    REQUIRE(server.listen("0") == "");
    uint16_t first_port = server.port();
    CHECK(first_port != 0);
    CHECK(exchange(loop, first_port, "GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200 OK\r\n", 0) == 0);

    // The same address again (a reload that did not change it) keeps the listener.
    CHECK(server.listen("0") == "");
    CHECK(server.port() == first_port);

    // A port in use is refused, naming the address, and the old listener stays.
    std::string taken = "127.0.0.1:" + std::to_string(first_port);
    error = server.listen(taken);
    CHECK(error.find(taken) != std::string::npos);
    CHECK(error.find("in use") != std::string::npos);
    CHECK(server.port() == first_port);
    CHECK(exchange(loop, first_port, "GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200 OK\r\n", 0) == 0);

    // Moving to a new address lets the old one go.
    REQUIRE(server.listen("127.0.0.1:0") == "");
    CHECK(server.port() != first_port);
    int fd = connect_to(first_port);
    CHECK(fd < 0);
    if (fd >= 0) close(fd);
    CHECK(exchange(loop, server.port(), "GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200 OK\r\n", 0) == 0);

    // IPv6 literals, where the machine has IPv6 loopback.
    error = server.listen("[::1]:0");
    if (error.find("Cannot assign") == std::string::npos && error.find("not supported") == std::string::npos) {
        CHECK(error == "");
        CHECK(server.port() != 0);
    }
}
