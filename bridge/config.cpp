#include "bridge/config.h"

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/fastcgi/client.h"
#include "bridge/log.h"
#include "bridge/version.h"

namespace m2b {

namespace {

[[noreturn]] void usage_error(const std::string& what) {
    std::fprintf(stderr, "m2bridge: %s\n", what.c_str());
    std::exit(2);
}

std::string canonical_dir(const std::string& path, const char* option) {
    char real[PATH_MAX];
    struct stat st {};
    if (!realpath(path.c_str(), real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
        usage_error(std::string(option) + ": not a directory: " + path);
    return real;
}

// Bounds keep every timer and buffer sane: a 1e-6 s keep-alive would flood
// Mongrel2, a 1e300 s timeout overflows the clock.
constexpr double kMaxSeconds = 7 * 24 * 3600;

void add_common(CLI::App* app, HandlerConfig& c) {
    app->option_defaults()->always_capture_default();
    app->add_option("--send-spec", c.send_spec, "the Handler's send_spec (m2bridge connects PULL to it)");
    app->add_option("--recv-spec", c.recv_spec, "the Handler's recv_spec (m2bridge connects PUB to it)");
    app->add_option("--document-root", c.document_root, "DOCUMENT_ROOT; scripts are looked up inside it");
    app->add_option("--index", c.index, "script for paths ending in a directory (a file name)");
    app->add_option("--upload-store", c.upload_store,
                    "Mongrel2's upload.temp_store template (e.g. /srv/m2/tmp/upload.XXXXXX) as m2bridge sees it");
    app->add_option("--timeout", c.timeout_seconds, "seconds a backend may stay silent before 504")
        ->check(CLI::Range(0.01, kMaxSeconds));
    app->add_option("--deadline", c.deadline_seconds,
                    "seconds a request may hold its backend, start to end (0: no limit)")
        ->check(CLI::Validator(
            [](std::string& v) {
                double d = std::strtod(v.c_str(), nullptr);
                return d == 0 || (d >= 0.01 && d <= kMaxSeconds) ? std::string() : "0, or 0.01 to 604800";
            },
            "0 or 0.01-604800"));
    app->add_option("--send-timeout", c.send_timeout_seconds,
                    "seconds a reply may wait for a client that takes no bytes; then the connection is closed")
        ->check(CLI::Range(0.1, kMaxSeconds));
    app->add_option("--max-requests", c.max_requests, "requests in flight toward the backend")
        ->check(CLI::Range(size_t{1}, size_t{100000}));
    app->add_option("--queue", c.queue, "requests allowed to wait; beyond it the answer is 503")
        ->check(CLI::Range(size_t{0}, size_t{1000000}));
    app->add_option("--max-pipelined", c.max_pipelined,
                    "requests waiting per connection behind the one answered; beyond it 503 and close")
        ->check(CLI::Range(size_t{0}, size_t{100000}));
    app->add_option("--buffer-size", c.buffer_size, "reply bytes held per request; the backend waits beyond it")
        ->check(CLI::Range(size_t{16 * 1024}, size_t{256 * 1024 * 1024}));
    app->add_option("--keepalive", c.keepalive_seconds, "seconds between Mongrel2 ctl keep-alive messages")
        ->check(CLI::Range(0.1, kMaxSeconds));
    app->add_option("--access-log", c.access_log, "access log file, or - for stdout");
    app->add_option("--log-level", c.log_level, "error, warn, info or debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
}

}  // namespace

HandlerConfig parse_command_line(int argc, char** argv) {
    CLI::App app{"m2bridge: CGI and FastCGI applications behind Mongrel2", "m2bridge"};
    app.set_version_flag("--version", std::string("m2bridge ") + kVersion);
    app.require_subcommand(1);
    HandlerConfig c;

    auto* fastcgi = app.add_subcommand("fastcgi", "send requests to a running FastCGI server");
    add_common(fastcgi, c);
    fastcgi->add_option("--script-filename", c.script_filename, "fixed SCRIPT_FILENAME (a front controller)");
    fastcgi->add_flag("--keep-conn", c.keep_conn, "reuse backend connections (FCGI_KEEP_CONN)");
    fastcgi->add_option("ADDRESS", c.backend, "unix:/path.sock or HOST:PORT")->required();

    auto* cgi = app.add_subcommand("cgi", "run a CGI program (or a directory of them) per request");
    add_common(cgi, c);
    size_t max_procs = 2 * std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
    cgi->add_option("--max-procs", max_procs, "scripts running at once; the rest queue")
        ->check(CLI::Range(size_t{1}, size_t{100000}));
    cgi->add_option("--pass-env", c.pass_env, "pass this variable of m2bridge's environment to scripts");
    cgi->add_option("PATH", c.backend, "a CGI program, or a directory whose scripts the path picks")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::CallForAllHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::CallForVersion& e) {
        std::exit(app.exit(e));
    } catch (const CLI::ParseError& e) {
        std::string what = e.what();
        usage_error(what.empty() ? "bad command line (see --help)" : what);
    }

    c.mode = cgi->parsed() ? Mode::Cgi : Mode::FastCgi;
    if (!c.document_root.empty()) c.document_root = canonical_dir(c.document_root, "--document-root");
    if (c.index.find('/') != std::string::npos || c.index == "." || c.index == "..")
        usage_error("--index must be a file name, not a path: " + c.index);
    if (c.mode == Mode::Cgi) {
        c.max_requests = max_procs;
        char real[PATH_MAX];
        struct stat st {};
        if (!realpath(c.backend.c_str(), real) || stat(real, &st) != 0)
            usage_error("PATH: no such file or directory: " + c.backend);
        c.backend = real;
        c.cgi_directory = S_ISDIR(st.st_mode);
        if (!c.cgi_directory && (!S_ISREG(st.st_mode) || access(real, X_OK) != 0))
            usage_error("PATH: not an executable file: " + c.backend);
        for (const auto& name : c.pass_env)
            if (name.empty() || name.find('=') != std::string::npos) usage_error("--pass-env: not a variable name: " + name);
    } else {
        sockaddr_storage addr;
        socklen_t len;
        std::string error = parse_backend_address(c.backend, addr, len);
        if (!error.empty()) usage_error("ADDRESS " + c.backend + ": " + error);
    }
    if (!c.upload_store.empty()) {
        auto slash = c.upload_store.rfind('/');
        if (c.upload_store.size() < 6 || c.upload_store.compare(c.upload_store.size() - 6, 6, "XXXXXX") != 0 ||
            slash == std::string::npos)
            usage_error("--upload-store must be a path ending in XXXXXX, like Mongrel2's upload.temp_store");
        std::string dir = canonical_dir(slash == 0 ? "/" : c.upload_store.substr(0, slash), "--upload-store");
        c.upload_store = (dir == "/" ? "" : dir) + c.upload_store.substr(slash);
        struct stat st {};
        stat(dir.c_str(), &st);
        c.upload_owner = st.st_uid;  // Mongrel2 writes its uploads into a directory it owns
    }
    if (c.send_spec.empty() || c.recv_spec.empty()) usage_error("--send-spec and --recv-spec must not be empty");
    return c;
}

}  // namespace m2b
