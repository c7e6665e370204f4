// The stream protocols' codecs: the SCGI and uwsgi request heads, and the
// status line of an HTTP-style answer turned into a CGI Status header.
#include <doctest/doctest.h>

#include <string>

#include "adapters/cgi_response.h"
#include "adapters/status_line.h"
#include "adapters/stream/scgi.h"
#include "adapters/stream/uwsgi.h"

using namespace m2b;
using namespace std::string_literals;

TEST_CASE("scgi: CONTENT_LENGTH first, then SCGI=1, then the variables, as one netstring") {
    std::string error;
    auto head = scgi::encode_head({{"REQUEST_METHOD", "POST"}, {"CONTENT_LENGTH", "5"}, {"PATH_INFO", "/a b"}}, 5, error);
    REQUIRE(head);
    std::string fields = "CONTENT_LENGTH\0" "5\0" "SCGI\0" "1\0" "REQUEST_METHOD\0" "POST\0" "PATH_INFO\0" "/a b\0"s;
    CHECK(*head == std::to_string(fields.size()) + ":" + fields + ",");
}

TEST_CASE("scgi: a request without a body still says CONTENT_LENGTH 0") {
    std::string error;
    auto head = scgi::encode_head({{"REQUEST_METHOD", "GET"}}, 0, error);
    REQUIRE(head);
    CHECK(head->starts_with("43:CONTENT_LENGTH\0" "0\0" "SCGI\0" "1\0"s));
    CHECK(head->ends_with("REQUEST_METHOD\0" "GET\0,"s));
}

TEST_CASE("scgi: a NUL inside a value cannot be carried") {
    std::string error;
    CHECK_FALSE(scgi::encode_head({{"HTTP_X", "a\0b"s}}, 0, error));
    CHECK(error.find("HTTP_X") != std::string::npos);
}

TEST_CASE("uwsgi: header, then little-endian length-prefixed names and values") {
    std::string error;
    auto head = uwsgi::encode_head({{"A", "xy"}, {"CONTENT_LENGTH", "300"}}, 300, error);
    REQUIRE(head);
    std::string vars = "\x01\x00" "A" "\x02\x00" "xy" "\x0e\x00" "CONTENT_LENGTH" "\x03\x00" "300"s;
    CHECK(*head == "\x00"s + static_cast<char>(vars.size()) + "\x00\x00"s + vars);
}

TEST_CASE("uwsgi: sizes above 255 are little-endian, and CONTENT_LENGTH is added for a body") {
    std::string error;
    std::string value(300, 'v');
    auto head = uwsgi::encode_head({{"K", value}}, 7, error);
    REQUIRE(head);
    CHECK((*head)[4] == 1);
    CHECK((*head)[7] == static_cast<char>(300 & 0xFF));
    CHECK((*head)[8] == static_cast<char>(300 >> 8));
    size_t size = static_cast<unsigned char>((*head)[1]) | static_cast<unsigned char>((*head)[2]) << 8;
    CHECK(size == head->size() - 4);
    CHECK(head->ends_with("\x0e\x00" "CONTENT_LENGTH" "\x01\x00" "7"s));
}

TEST_CASE("uwsgi: variables beyond 64 KiB are refused, not truncated") {
    std::string error;
    CHECK_FALSE(uwsgi::encode_head({{"BIG", std::string(70000, 'x')}}, 0, error));
    CHECK(error.find("BIG") != std::string::npos);
    CHECK_FALSE(uwsgi::encode_head({{"A", std::string(40000, 'x')}, {"B", std::string(40000, 'x')}}, 0, error));
    CHECK(error == "request variables take more than uwsgi's 65535 bytes");
}

namespace {

// Feeds `response` split at every position into two pieces; all splits must agree.
std::string converted(const std::string& response, StatusLineToCgi::State* end_state = nullptr) {
    std::string first;
    for (size_t cut = 0; cut <= response.size(); ++cut) {
        StatusLineToCgi c;
        std::string out(c.feed(std::string_view(response).substr(0, cut)));
        out += c.feed(std::string_view(response).substr(cut));
        if (cut == 0) {
            first = out;
            if (end_state) *end_state = c.state();
        }
        CHECK(out == first);
    }
    return first;
}

}  // namespace

TEST_CASE("status line: HTTP/1.x NNN reason becomes Status: NNN reason") {
    CHECK(converted("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody") ==
          "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody");
    CHECK(converted("HTTP/1.0 200\nA: b\n\n") == "Status: 200\r\nA: b\n\n");
    CHECK(converted("HTTP/1.1 201 \r\n\r\n") == "Status: 201\r\n\r\n");  // an empty reason is left out
}

TEST_CASE("status line: a CGI response passes unchanged") {
    CHECK(converted("Status: 302 Found\r\nLocation: /x\r\n\r\n") == "Status: 302 Found\r\nLocation: /x\r\n\r\n");
    CHECK(converted("Content-Type: text/plain\r\n\r\nHTTP/1.1 200 OK") == "Content-Type: text/plain\r\n\r\nHTTP/1.1 200 OK");
    CHECK(converted("HTTX") == "HTTX");
}

TEST_CASE("status line: a malformed or endless line is an error that passes nothing") {
    for (std::string bad : {"HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/1.1 200OK\r\n", "HTTP/1 200 OK\r\n", "HTTP/1.1 200 O\x01K\r\n",
                            "HTTP/1.1  200 OK\r\n"}) {
        StatusLineToCgi::State state{};
        CHECK_MESSAGE(converted(bad, &state).empty(), bad);
        CHECK(state == StatusLineToCgi::State::Error);
    }
    StatusLineToCgi c;
    CHECK(c.feed("HTTP/1.1 200 " + std::string(StatusLineToCgi::kMaxLine, 'a')).empty());
    CHECK(c.state() == StatusLineToCgi::State::Error);
    CHECK(c.error() == "status line longer than 8192 bytes");
}

TEST_CASE("status line: the converted head reads as a CGI response") {
    StatusLineToCgi c;
    CgiHeadParser parser;
    parser.feed(c.feed("HTTP/1.1 418 Teapot\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\ntea"));
    REQUIRE(parser.state() == CgiHeadParser::State::Done);
    CHECK(parser.head().status == 418);
    CHECK(parser.head().reason == "Teapot");
    CHECK(parser.leftover_body() == "tea");
}
