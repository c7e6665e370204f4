#include <doctest/doctest.h>

#include "bridge/http_reply.h"

using namespace m2b;

TEST_CASE("reply context from version, method and Connection") {
    auto c = reply_context("HTTP/1.1", "GET", "");
    CHECK_FALSE(c.http10);
    CHECK_FALSE(c.client_wants_close);
    CHECK(reply_context("HTTP/1.1", "GET", "Keep-Alive, Close").client_wants_close);
    CHECK(reply_context("HTTP/1.0", "GET", "").client_wants_close);
    CHECK_FALSE(reply_context("HTTP/1.0", "GET", "keep-alive").client_wants_close);
    CHECK(reply_context("HTTP/1.1", "HEAD", "").head_request);
}

TEST_CASE("framing choice") {
    ReplyContext v11 = reply_context("HTTP/1.1", "GET", "");
    ReplyContext v10 = reply_context("HTTP/1.0", "GET", "");
    CHECK(choose_framing(v11, 200, 5) == Framing::ContentLength);
    CHECK(choose_framing(v11, 200, -1) == Framing::Chunked);
    CHECK(choose_framing(v10, 200, -1) == Framing::CloseDelimited);
    CHECK(choose_framing(v11, 204, 5) == Framing::None);
    CHECK(choose_framing(v11, 304, -1) == Framing::None);
    CHECK(must_close(v10, Framing::ContentLength));
    CHECK_FALSE(must_close(v11, Framing::Chunked));
}

TEST_CASE("head bytes") {
    ReplyHead head;
    head.status = 404;
    head.headers = {{"Content-Type", "text/plain"}};
    std::string h = build_head(head, reply_context("HTTP/1.1", "GET", ""), Framing::ContentLength, 12, 0);
    CHECK(h.starts_with("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"));
    CHECK(h.find("Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n") != std::string::npos);
    CHECK(h.find("Content-Length: 12\r\n") != std::string::npos);
    CHECK(h.find("Connection") == std::string::npos);
    CHECK(h.ends_with("\r\n\r\n"));

    std::string chunked = build_head(head, reply_context("HTTP/1.1", "GET", "close"), Framing::Chunked, 0, 0);
    CHECK(chunked.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(chunked.find("Connection: close\r\n") != std::string::npos);

    std::string v10 = build_head(head, reply_context("HTTP/1.0", "GET", "keep-alive"), Framing::ContentLength, 1, 0);
    CHECK(v10.starts_with("HTTP/1.0 404"));
    CHECK(v10.find("Connection: keep-alive\r\n") != std::string::npos);
}

TEST_CASE("chunk size lines") {
    char buf[20];
    CHECK(chunk_size_line(26, buf) == "1a\r\n");
    CHECK(chunk_size_line(SIZE_MAX, buf) == "ffffffffffffffff\r\n");
}

TEST_CASE("error reply: HEAD gets no body") {
    std::string get = build_error_reply(503, reply_context("HTTP/1.1", "GET", ""), 0, {{"Retry-After", "1"}});
    CHECK(get.starts_with("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"));
    CHECK(get.ends_with("\r\n\r\n503 Service Unavailable\n"));
    std::string head = build_error_reply(502, reply_context("HTTP/1.1", "HEAD", ""), 0);
    CHECK(head.ends_with("\r\n\r\n"));
    CHECK(head.find("Content-Length: 16\r\n") != std::string::npos);
}
