#include <doctest/doctest.h>

#include "bridge/upload.h"

using namespace m2b;

namespace {

Request with(std::vector<Header> extra, std::string body = "") {
    Request r;
    r.headers = {{"METHOD", {"POST"}}, {"PATH", {"/x"}}};
    for (auto& h : extra) r.headers.push_back(h);
    r.body = std::move(body);
    return r;
}

const std::string kStore = "/srv/m2/tmp/upload.XXXXXX";

}  // namespace

TEST_CASE("upload path must fit the store template") {
    CHECK(upload_path_in_store("/srv/m2/tmp/upload.Ab3dE9", kStore) == "/srv/m2/tmp/upload.Ab3dE9");
    CHECK(upload_path_in_store("tmp/upload.Ab3dE9", kStore) == "/srv/m2/tmp/upload.Ab3dE9");   // relative
    CHECK(upload_path_in_store("/tmp/upload.Ab3dE9", kStore) == "/srv/m2/tmp/upload.Ab3dE9");  // chroot
    CHECK(upload_path_in_store("upload.Ab3dE9", kStore) == "/srv/m2/tmp/upload.Ab3dE9");
    CHECK(upload_path_in_store("/etc/passwd", kStore).empty());
    CHECK(upload_path_in_store("/srv/m2/tmp/upload.Ab3dE", kStore).empty());     // 5 characters
    CHECK(upload_path_in_store("/srv/m2/tmp/upload.Ab3d/9", kStore).empty());
    CHECK(upload_path_in_store("/srv/m2/tmp/../tmp/upload.Ab3dE9", kStore).empty());
    CHECK(upload_path_in_store("/other/tmp/upload.Ab3dE9", kStore).empty());
    CHECK(upload_path_in_store("xtmp/upload.Ab3dE9", kStore).empty());
    CHECK(upload_path_in_store("/srv/m2/tmp/other.Ab3dE9", kStore).empty());
}

TEST_CASE("upload states") {
    using S = UploadCheck::State;
    CHECK(check_upload(with({}), kStore).state == S::None);
    const std::string path = "/srv/m2/tmp/upload.Ab3dE9";
    // The first message of a real upload: start only, no body, a declared length.
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"content-length", {"100000"}}}), kStore).state ==
          S::Started);
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"transfer-encoding", {"chunked"}}}), kStore).state ==
          S::Started);
    // ...even when a client forged a -done into it.
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"x-mongrel2-upload-done", {"/etc/passwd"}},
                             {"content-length", {"100000"}}}),
                       kStore)
              .state == S::Started);
    auto done = check_upload(with({{"x-mongrel2-upload-start", {path}}, {"x-mongrel2-upload-done", {path}},
                                   {"content-length", {"100000"}}}),
                             kStore);
    CHECK(done.state == S::Done);
    CHECK(done.file == path);
    CHECK(done.finished);
    CHECK(done.reported == path);
    // Forged: on a request with a body, done without start, no declared body.
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"x-mongrel2-upload-done", {path}}}, "abc"), kStore)
              .state == S::Forged);
    CHECK(check_upload(with({{"x-mongrel2-upload-done", {path}}}), kStore).state == S::Forged);
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"x-mongrel2-upload-done", {path}}}), kStore).state ==
          S::Forged);  // a bodiless GET naming someone's upload
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}}), kStore).state == S::Forged);
    // Real-looking but outside the store (a template that does not match): refused at the start.
    auto outside = check_upload(with({{"x-mongrel2-upload-start", {"/etc/passwd"}}, {"content-length", {"100000"}}}), kStore);
    CHECK(outside.state == S::Refused);
    CHECK_FALSE(outside.finished);
    // Real-looking but nothing to check it against: refused at the start, and its end is recognised.
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"content-length", {"100000"}}}), "").state ==
          S::Refused);
    CHECK(check_upload(with({{"x-mongrel2-upload-start", {path}}, {"x-mongrel2-upload-done", {path}},
                             {"content-length", {"100000"}}}),
                       "")
              .finished);
}
