// The request-body reader every gateway uses (adapters/request_body.cpp).
#include <doctest/doctest.h>

#include <cstdio>
#include <string>
#include <unistd.h>

#include "adapters/request_body.h"

using namespace m2b;

TEST_CASE("request body: inline bytes come straight from the request, taken in any pieces") {
    std::string text = "hello world";
    BodySource body{text};
    RequestBodyReader r(body, 4);
    CHECK(r.pending() == "hello world");
    CHECK(r.pending().data() == text.data());  // no copy
    r.consume(3);
    CHECK(r.pending() == "lo world");
    r.consume(8);
    CHECK(r.pending().empty());
    CHECK(r.state() == RequestBodyReader::State::Done);
}

TEST_CASE("request body: a file is read a chunk at a time; a short file is told apart from the end") {
    char path[] = "/tmp/m2b-body-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    REQUIRE(write(fd, "abcdefghij", 10) == 10);
    BodySource whole{{}, fd, 10};
    RequestBodyReader r(whole, 4);
    std::string got;
    while (true) {
        std::string_view piece = r.pending();
        if (piece.empty()) break;
        CHECK(piece.size() <= 4);
        size_t take = std::min<size_t>(piece.size(), 3);  // the backend takes less than offered
        got.append(piece.substr(0, take));
        r.consume(take);
    }
    CHECK(got == "abcdefghij");
    CHECK(r.state() == RequestBodyReader::State::Done);

    BodySource longer{{}, fd, 14};  // the upload says 14 bytes; the file has 10
    RequestBodyReader s(longer, 8);
    s.consume(s.pending().size());
    s.consume(s.pending().size());
    CHECK(s.pending().empty());
    CHECK(s.state() == RequestBodyReader::State::ShortFile);
    close(fd);
}

TEST_CASE("request body: no body is done at once") {
    BodySource none;
    RequestBodyReader r(none, 4);
    CHECK(r.pending().empty());
    CHECK(r.state() == RequestBodyReader::State::Done);
}
