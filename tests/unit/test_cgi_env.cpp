#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

#include "bridge/cgi_env.h"
#include "adapters/script_path.h"

using namespace m2b;
namespace fs = std::filesystem;

namespace {

Request make_request(std::string path, std::string query, std::vector<Header> extra = {}) {
    Request r;
    r.sender = "sender-1";
    r.conn_id = 17;
    r.path = path;
    r.headers = {{"PATH", {path}},       {"METHOD", {"GET"}},           {"VERSION", {"HTTP/1.1"}},
                 {"URI", {path + (query.empty() ? "" : "?" + query)}}, {"PATTERN", {"/app/"}},
                 {"URL_SCHEME", {"http"}}, {"REMOTE_ADDR", {"10.1.2.3"}}, {"host", {"example.org:8080"}}};
    if (!query.empty()) r.headers.push_back({"QUERY", {query}});
    for (auto& h : extra) r.headers.push_back(h);
    return r;
}

std::map<std::string, std::string> as_map(const CgiEnv& env) {
    std::map<std::string, std::string> m;
    for (auto& [k, v] : env) {
        CHECK_MESSAGE(m.count(k) == 0, "duplicate variable " << k);
        m[k] = v;
    }
    return m;
}

struct TempTree {
    fs::path root;
    TempTree() {
        char tmpl[] = "/tmp/m2b-unit-XXXXXX";
        root = mkdtemp(tmpl);
        fs::create_directories(root / "sub");
        std::ofstream(root / "info.php") << "<?php";
        std::ofstream(root / "sub" / "index.php") << "<?php";
        std::ofstream(root / "run.sh") << "#!/bin/sh";
        fs::permissions(root / "run.sh", fs::perms::owner_all);
        fs::create_symlink("/etc/passwd", root / "escape");
        root = fs::canonical(root);
    }
    ~TempTree() { fs::remove_all(root); }
};

}  // namespace

TEST_CASE("mount point from a route pattern") {
    CHECK(mount_point("/app/") == "/app");
    CHECK(mount_point("/") == "");
    CHECK(mount_point("/app/(.*)") == "/app");
    CHECK(mount_point("/a/b") == "/a/b");
}

TEST_CASE("decode_segment: once, no encoded slash, no control bytes") {
    std::string out;
    CHECK(decode_segment("a%20b", out));
    CHECK(out == "a b");
    CHECK(decode_segment("%2e%2e", out));
    CHECK(out == "..");
    CHECK(decode_segment("%%32%65", out) == false);  // double encoding is not decoded twice
    CHECK_FALSE(decode_segment("a%2Fb", out));
    CHECK_FALSE(decode_segment("a%00", out));
    CHECK_FALSE(decode_segment("a%0a", out));
    CHECK_FALSE(decode_segment("a%2", out));
}

TEST_CASE("product.md example: route /app/, docroot, PATH_INFO and query") {
    TempTree tree;
    ScriptOptions options{tree.root.string(), "", false};
    ScriptTarget t = resolve_script(options, "/app/", "/app/info.php/extra");
    REQUIRE(t.status == 0);
    CHECK(t.script_name == "/app/info.php");
    CHECK(t.script_filename == (tree.root / "info.php").string());
    CHECK(t.path_info == "/extra");

    Request req = make_request("/app/info.php/extra", "x=1");
    auto env = as_map(build_cgi_env(req, t, EnvOptions{tree.root.string(), ""}, std::nullopt));
    CHECK(env["SCRIPT_NAME"] == "/app/info.php");
    CHECK(env["SCRIPT_FILENAME"] == (tree.root / "info.php").string());
    CHECK(env["PATH_INFO"] == "/extra");
    CHECK(env["PATH_TRANSLATED"] == tree.root.string() + "/extra");
    CHECK(env["QUERY_STRING"] == "x=1");
    CHECK(env["REQUEST_URI"] == "/app/info.php/extra?x=1");
    CHECK(env["SERVER_NAME"] == "example.org");
    CHECK(env["SERVER_PORT"] == "8080");
    CHECK(env["REMOTE_ADDR"] == "10.1.2.3");
    CHECK(env["GATEWAY_INTERFACE"] == "CGI/1.1");
    CHECK(env["REDIRECT_STATUS"] == "200");
    CHECK(env["X_MONGREL2_SENDER"] == "sender-1");
    CHECK(env["X_MONGREL2_CONN_ID"] == "17");
    CHECK(env["X_MONGREL2_PATTERN"] == "/app/");
    CHECK(env["HTTP_HOST"] == "example.org:8080");
    CHECK(env.count("CONTENT_LENGTH") == 0);
    CHECK(env.count("HTTPS") == 0);
}

TEST_CASE("directory walk: index, trailing slash, missing, traversal, symlink out") {
    TempTree tree;
    ScriptOptions options{tree.root.string(), "index.php", false};
    auto idx = resolve_script(options, "/app/", "/app/sub/");
    REQUIRE(idx.status == 0);
    CHECK(idx.script_name == "/app/sub/index.php");
    CHECK(idx.path_info.empty());
    auto slash = resolve_script(options, "/app/", "/app/info.php/");
    CHECK(slash.path_info == "/");
    auto spaces = resolve_script(options, "/app/", "/app/info.php/a/b%20c");
    CHECK(spaces.path_info == "/a/b c");
    CHECK(resolve_script(options, "/app/", "/app/nope.php").status == 404);
    CHECK(resolve_script(options, "/app/", "/app/../etc/passwd").status == 403);
    CHECK(resolve_script(options, "/app/", "/app/%2e%2e/etc/passwd").status == 403);
    CHECK(resolve_script(options, "/app/", "/app/..%2fetc/passwd").status == 400);
    CHECK(resolve_script(options, "/app/", "/app/escape").status == 403);
    CHECK(resolve_script(options, "/app/", "/app/info.php%00.txt").status == 400);
    auto dotdot_inside = resolve_script(options, "/app/", "/app/sub/../info.php");
    CHECK(dotdot_inside.script_name == "/app/info.php");

    ScriptOptions exec{tree.root.string(), "", true};
    CHECK(resolve_script(exec, "/app/", "/app/info.php").status == 403);
    CHECK(resolve_script(exec, "/app/", "/app/run.sh/x").status == 0);
}

TEST_CASE("one script: SCRIPT_NAME is the mount point") {
    ScriptOptions options;
    auto t = resolve_script(options, "/app/", "/app/some/where");
    CHECK(t.script_name == "/app");
    CHECK(t.path_info == "/some/where");
    auto root = resolve_script(options, "/", "/");
    CHECK(root.script_name == "");
    CHECK(root.path_info == "/");
}

TEST_CASE("HTTP_* mapping: joins, cookies, httpoxy and Mongrel2's own keys") {
    Request req = make_request("/app/x", "", {{"x-dup", {"one", "two"}},
                                             {"cookie", {"a=1", "b=2"}},
                                             {"proxy", {"http://evil:1"}},
                                             {"x-mongrel2-upload-start", {"/etc/passwd"}},
                                             {"x_under", {"u"}},
                                             {"content-type", {"text/plain"}},
                                             {"content-length", {"5"}},
                                             {"x-tab", {"a\tb"}},
                                             {"x-bin", {"\xff\xfe"}}});
    auto env = as_map(build_cgi_env(req, ScriptTarget{}, EnvOptions{}, 5));
    CHECK(env["HTTP_X_DUP"] == "one, two");
    CHECK(env["HTTP_COOKIE"] == "a=1; b=2");
    CHECK(env.count("HTTP_PROXY") == 0);
    CHECK(env.count("HTTP_X_MONGREL2_UPLOAD_START") == 0);
    CHECK(env.count("HTTP_X_UNDER") == 0);
    CHECK(env.count("HTTP_CONTENT_TYPE") == 0);
    CHECK(env.count("HTTP_PATH") == 0);
    CHECK(env.count("HTTP_METHOD") == 0);
    CHECK(env["CONTENT_TYPE"] == "text/plain");
    CHECK(env["CONTENT_LENGTH"] == "5");
    CHECK(env["HTTP_X_TAB"] == "a\tb");
    CHECK(env["HTTP_X_BIN"] == "\xff\xfe");
}

TEST_CASE("split_host") {
    CHECK(split_host("[::1]:8080", false) == std::pair<std::string, std::string>{"[::1]", "8080"});
    CHECK(split_host("Example.ORG", true) == std::pair<std::string, std::string>{"example.org", "443"});
    CHECK(split_host("bad host\"", false).first == "localhost");
}
