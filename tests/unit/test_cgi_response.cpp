#include <doctest/doctest.h>

#include "adapters/cgi_response.h"

using namespace m2b;
using State = CgiHeadParser::State;

namespace {

CgiHeadParser parse(std::string_view text) {
    CgiHeadParser p;
    p.feed(text);
    return p;
}

std::string header(const ResponseHead& h, std::string_view name) {
    for (auto& [n, v] : h.headers)
        if (n == name) return v;
    return "<none>";
}

}  // namespace

TEST_CASE("document with CRLF, LF and mixed line ends") {
    for (std::string_view text : {"Content-Type: text/plain\r\nX-A: 1\r\n\r\nbody", "Content-Type: text/plain\nX-A: 1\n\nbody",
                                  "Content-Type: text/plain\r\nX-A: 1\n\r\nbody"}) {
        auto p = parse(text);
        REQUIRE(p.state() == State::Done);
        CHECK(p.head().status == 200);
        CHECK(p.head().kind == ResponseKind::Document);
        CHECK(header(p.head(), "X-A") == "1");
        CHECK(p.leftover_body() == "body");
    }
}

TEST_CASE("head split across many feeds, byte by byte") {
    std::string text = "Status: 201 Made\r\nContent-Type: a/b\r\n\r\nxyz";
    CgiHeadParser p;
    for (char c : text) p.feed(std::string_view(&c, 1));
    REQUIRE(p.state() == State::Done);
    CHECK(p.head().status == 201);
    CHECK(p.head().reason == "Made");
    // Only the byte that completed the head came along as leftover; the rest
    // was never fed to the parser after Done.
    CHECK(p.leftover_body().empty());
}

TEST_CASE("Status header") {
    CHECK(parse("Status: 404\n\n").head().status == 404);
    CHECK(parse("Status: 404\n\n").head().reason.empty());
    CHECK(parse("status: 503 Busy Now\nContent-Type: x/y\n\n").head().reason == "Busy Now");
    CHECK(parse("Status: abc\n\n").state() == State::Error);
    CHECK(parse("Status: 20\n\n").state() == State::Error);
    CHECK(parse("Status: 2000\n\n").state() == State::Error);
    CHECK(parse("Status: 099 Low\n\n").state() == State::Error);
    CHECK(parse("Status: 999 Weird\n\n").state() == State::Error);
    CHECK(parse("Status: 200\nStatus: 404\n\n").state() == State::Error);
}

TEST_CASE("redirects") {
    auto local = parse("Location: /other?x=1\n\n");
    CHECK(local.head().kind == ResponseKind::LocalRedirect);
    auto client = parse("Location: http://example.com/\n\n");
    CHECK(client.head().kind == ResponseKind::ClientRedirect);
    CHECK(client.head().status == 302);
    auto protocol_relative = parse("Location: //evil.example/\n\n");
    CHECK(protocol_relative.head().kind == ResponseKind::ClientRedirect);
    // PHP's header("Location: /x") also sends Status: 302: a document, not a local redirect.
    auto php = parse("Status: 302 Found\nLocation: /x\nContent-type: text/html\n\n");
    CHECK(php.head().kind == ResponseKind::Document);
    CHECK(php.head().status == 302);
    CHECK(parse("Location: /a\nLocation: /b\n\n").state() == State::Error);
}

TEST_CASE("injection and malformed heads are errors") {
    CHECK(parse("Content-Type: text/plain\rSet-Cookie: s=1\n\n").state() == State::Error);
    CHECK(parse(std::string_view("Content-Type: te\0xt\n\n", 21)).state() == State::Error);
    CHECK(parse("Content-Type: text/plain\n folded\n\n").state() == State::Error);
    CHECK(parse("\r\nContent-Type: text/plain\n\n").state() == State::Error);
    CHECK(parse("\nbody").state() == State::Error);
    CHECK(parse("just some text\n\n").state() == State::Error);
    CHECK(parse("HTTP/1.1 200 OK\n\n").state() == State::Error);
    CHECK(parse("Content-Type : x\n\n").state() == State::Error);
    CHECK(parse("X(A): 1\nContent-Type: x\n\n").state() == State::Error);
    CHECK(parse("X-Only: 1\n\n").state() == State::Error);  // no CGI field at all
    CHECK(parse("Content-Type: a\nContent-Type: b\n\n").state() == State::Error);
    CHECK(parse("Content-Length: 5\nContent-Length: 6\nContent-Type: a\n\n").state() == State::Error);
    CHECK(parse("Content-Length: x\nContent-Type: a\n\n").state() == State::Error);
}

TEST_CASE("head larger than 64 KiB is an error, whether or not it ends") {
    std::string big = "Content-Type: a\nX-Big: " + std::string(70000, 'a');
    CHECK(parse(big).state() == State::Error);
    CHECK(parse(big + "\n\n").state() == State::Error);
    std::string fits = "Content-Type: a\nX-Big: " + std::string(60000, 'a') + "\n\n";
    CHECK(parse(fits).state() == State::Done);
}

TEST_CASE("hop-by-hop, framing and server-only fields are dropped") {
    auto p = parse(
        "Content-Type: a\nConnection: keep-alive\nTransfer-Encoding: chunked\nUpgrade: h2c\nX-Sendfile: /etc/shadow\n"
        "X-CGI-Thing: 1\nDate: yesterday\nContent-Length: 3\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n");
    REQUIRE(p.state() == State::Done);
    auto& h = p.head();
    CHECK(h.content_length == 3u);
    REQUIRE(h.headers.size() == 3);
    CHECK(h.headers[0].first == "Content-Type");
    CHECK(h.headers[1] == std::pair<std::string, std::string>{"Set-Cookie", "a=1"});
    CHECK(h.headers[2] == std::pair<std::string, std::string>{"Set-Cookie", "b=2"});
    CHECK(h.sendfile == "/etc/shadow");  // kept aside for bridge/file_reply.cpp, which checks the roots
}

TEST_CASE("X-Mongrel2-Deliver") {
    auto p = parse("Content-Type: a\nX-Mongrel2-Deliver: 12 17 42\n\n");
    REQUIRE(p.state() == State::Done);
    REQUIRE(p.head().deliver);
    CHECK(*p.head().deliver == std::vector<uint64_t>{12, 17, 42});
    for (auto& [n, v] : p.head().headers) CHECK(n != "X-Mongrel2-Deliver");
    auto empty = parse("X-Mongrel2-Deliver:\n\n");
    REQUIRE(empty.state() == State::Done);
    CHECK(empty.head().deliver->empty());
    CHECK(parse("Content-Type: a\nX-Mongrel2-Deliver: 1 x 2\n\n").state() == State::Error);
    CHECK(parse("Content-Type: a\nX-Mongrel2-Deliver: -1\n\n").state() == State::Error);
    CHECK(parse("Content-Type: a\nX-Mongrel2-Deliver: 99999999999\n\n").state() == State::Error);
    CHECK(*parse_deliver_ids("1,2, 3") == std::vector<uint64_t>{1, 2, 3});
}
