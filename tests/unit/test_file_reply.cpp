// X-Sendfile's decisions (bridge/file_reply.cpp): which paths may be sent and
// what reply a request gets (200, 206, 304, 416).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/cgi_response.h"
#include "bridge/file_reply.h"

using namespace m2b;
namespace fs = std::filesystem;

namespace {

const std::string* header(const FilePlan& plan, std::string_view name) {
    for (const auto& [n, v] : plan.headers)
        if (n == name) return &v;
    return nullptr;
}

constexpr std::time_t kMtime = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

}  // namespace

TEST_CASE("file reply: a plain request gets the whole file with validators") {
    FilePlan plan = plan_file_reply(1000, kMtime, 5, 200, {});
    CHECK(plan.status == 200);
    CHECK(plan.offset == 0);
    CHECK(plan.length == 1000);
    REQUIRE(header(plan, "ETag"));
    CHECK(*header(plan, "ETag") == "\"3e8-" + [] {
        char hex[32];
        std::snprintf(hex, sizeof hex, "%llx", 784111777ull * 1000000000ull + 5);
        return std::string(hex);
    }() + "\"");
    CHECK(*header(plan, "Last-Modified") == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(*header(plan, "Accept-Ranges") == "bytes");
}

TEST_CASE("file reply: 304 for a matching tag or a date not older than the file") {
    std::string etag = *header(plan_file_reply(10, kMtime, 0, 200, {}), "ETag");
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_none_match = etag}).status == 304);
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_none_match = "\"x\", W/" + etag}).status == 304);
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_none_match = "*"}).status == 304);
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_none_match = "\"other\""}).status == 200);
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_modified_since = "Sun, 06 Nov 1994 08:49:37 GMT"}).status == 304);
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_modified_since = "Sun, 06 Nov 1994 08:49:36 GMT"}).status == 200);
    CHECK(plan_file_reply(10, kMtime, 0, 200, {.if_modified_since = "yesterday"}).status == 200);
    // If-None-Match decides alone when both are given (RFC 9110 §13.2.2).
    CHECK(plan_file_reply(10, kMtime, 0, 200,
                          {.if_none_match = "\"other\"", .if_modified_since = "Sun, 06 Nov 1994 08:49:37 GMT"})
              .status == 200);
    FilePlan fresh = plan_file_reply(10, kMtime, 0, 200, {.if_none_match = etag});
    CHECK(fresh.length == 0);
}

TEST_CASE("file reply: one byte range is a 206; what cannot be served is a 416; the rest ignores Range") {
    auto range = [](std::string spec, uint64_t size = 100) {
        return plan_file_reply(size, kMtime, 0, 200, {.range = std::move(spec)});
    };
    FilePlan p = range("bytes=10-19");
    CHECK(p.status == 206);
    CHECK(p.offset == 10);
    CHECK(p.length == 10);
    CHECK(*header(p, "Content-Range") == "bytes 10-19/100");
    CHECK(range("bytes=90-").length == 10);
    CHECK(range("bytes=90-500").length == 10);
    p = range("bytes=-30");
    CHECK(p.offset == 70);
    CHECK(p.length == 30);
    CHECK(range("bytes=-300").length == 100);
    p = range("bytes=100-");
    CHECK(p.status == 416);
    CHECK(p.length == 0);
    CHECK(*header(p, "Content-Range") == "bytes */100");
    CHECK(range("bytes=-0").status == 416);
    CHECK(range("bytes=0-", 0).status == 416);
    for (std::string ignored : {"bytes=1-2,4-5", "bytes=5-1", "items=1-2", "bytes=a-b", "bytes=-", "bytes=1"})
        CHECK_MESSAGE(range(ignored).status == 200, ignored);
}

TEST_CASE("file reply: If-Range keeps the range only for the current file") {
    std::string etag = *header(plan_file_reply(100, kMtime, 0, 200, {}), "ETag");
    CHECK(plan_file_reply(100, kMtime, 0, 200, {.range = "bytes=0-9", .if_range = etag}).status == 206);
    CHECK(plan_file_reply(100, kMtime, 0, 200, {.range = "bytes=0-9", .if_range = "\"old\""}).status == 200);
    CHECK(plan_file_reply(100, kMtime, 0, 200, {.range = "bytes=0-9", .if_range = "Sun, 06 Nov 1994 08:49:37 GMT"})
              .status == 206);
    CHECK(plan_file_reply(100, kMtime, 0, 200, {.range = "bytes=0-9", .if_range = "Sun, 06 Nov 1994 08:49:38 GMT"})
              .status == 200);
}

TEST_CASE("file reply: another status from the app sends the whole file with that status, no validators") {
    FilePlan p = plan_file_reply(100, kMtime, 0, 404, {.range = "bytes=0-9", .if_none_match = "*"});
    CHECK(p.status == 404);
    CHECK(p.length == 100);
    CHECK(p.headers.empty());
    // A status without a body reads nothing of the file.
    CHECK(plan_file_reply(100, kMtime, 0, 204, {}).length == 0);
    CHECK(plan_file_reply(100, kMtime, 0, 304, {}).length == 0);
    // A 206 from the app: the range is m2bridge's to cut, as for a 200.
    p = plan_file_reply(100, kMtime, 0, 206, {.range = "bytes=0-9"});
    CHECK(p.status == 206);
    CHECK(*header(p, "Content-Range") == "bytes 0-9/100");
    p = plan_file_reply(100, kMtime, 0, 206, {});
    CHECK(p.status == 200);
    CHECK(p.length == 100);
}

TEST_CASE("file reply: ranges and 304 are for GET and HEAD only") {
    FilePlan p = plan_file_reply(100, kMtime, 0, 200,
                                 {.get_or_head = false, .range = "bytes=0-9", .if_none_match = "*"});
    CHECK(p.status == 200);
    CHECK(p.length == 100);
    CHECK(header(p, "ETag"));
}

TEST_CASE("file reply: HTTP dates") {
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == kMtime);
    CHECK_FALSE(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"));
    CHECK_FALSE(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"));
    CHECK_FALSE(parse_http_date(""));
}

TEST_CASE("file reply: only regular files inside a root, wherever their symlinks point") {
    char tmpl[] = "/tmp/m2b-file-reply-XXXXXX";
    fs::path base = fs::canonical(mkdtemp(tmpl));
    fs::create_directories(base / "root" / "sub");
    std::ofstream(base / "root" / "sub" / "a.txt") << "a";
    std::ofstream(base / "outside.txt") << "o";
    fs::create_symlink(base / "outside.txt", base / "root" / "out");
    fs::create_symlink("sub/a.txt", base / "root" / "in");
    mkfifo((base / "root" / "fifo").c_str(), 0600);
    std::vector<std::string> roots{(base / "root").string()};
    struct stat st {};
    std::string why;
    CHECK(open_in_roots((base / "root" / "sub" / "a.txt").string(), roots, st, why));
    CHECK(st.st_size == 1);
    CHECK(open_in_roots((base / "root" / "in").string(), roots, st, why));
    CHECK_FALSE(open_in_roots((base / "root" / "out").string(), roots, st, why));
    CHECK(why.starts_with("outside every --sendfile-root"));
    CHECK_FALSE(open_in_roots((base / "root" / ".." / "outside.txt").string(), roots, st, why));
    CHECK_FALSE(open_in_roots((base / "root" / "fifo").string(), roots, st, why));
    CHECK(why == "not a regular file");
    // A FIFO outside the roots, through a symlink: never opened (it would block or signal a writer).
    mkfifo((base / "outside.fifo").c_str(), 0600);
    fs::create_symlink(base / "outside.fifo", base / "root" / "to-fifo");
    CHECK_FALSE(open_in_roots((base / "root" / "to-fifo").string(), roots, st, why));
    CHECK(why.starts_with("outside every --sendfile-root"));
    CHECK_FALSE(open_in_roots((base / "root" / "sub").string(), roots, st, why));
    CHECK_FALSE(open_in_roots("sub/a.txt", roots, st, why));
    CHECK(why == "not an absolute path");
    CHECK_FALSE(open_in_roots((base / "root" / "sub" / "a.txt").string(), {}, st, why));
    CHECK(why == "no --sendfile-root is configured");
    // A root is a directory, not a prefix: root2 is not inside root.
    fs::create_directories(base / "root2");
    std::ofstream(base / "root2" / "b") << "b";
    CHECK_FALSE(open_in_roots((base / "root2" / "b").string(), roots, st, why));
    fs::remove_all(base);
}

TEST_CASE("cgi response: the X-Sendfile family is taken out of the head and kept aside") {
    for (std::string name : {"X-Sendfile", "X-Accel-Redirect", "X-LIGHTTPD-send-file"}) {
        CgiHeadParser p;
        REQUIRE(p.feed(name + ": /srv/f\r\nContent-Type: text/plain\r\n\r\nbody") == CgiHeadParser::State::Done);
        CHECK(p.head().sendfile == "/srv/f");
        CHECK(p.head().headers.size() == 1);
    }
    CgiHeadParser alone;
    CHECK(alone.feed("X-Sendfile: /srv/f\r\n\r\n") == CgiHeadParser::State::Done);
    CgiHeadParser twice;
    CHECK(twice.feed("X-Sendfile: /a\r\nX-Accel-Redirect: /b\r\n\r\n") == CgiHeadParser::State::Error);
    CgiHeadParser with_deliver;
    CHECK(with_deliver.feed("X-Sendfile: /a\r\nX-Mongrel2-Deliver: 1\r\n\r\n") == CgiHeadParser::State::Error);
}
