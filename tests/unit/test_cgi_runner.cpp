// The CGI runner with real processes on a real loop, for what the integration
// tests cannot force: a reader slower than a script's background writers.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "adapters/cgi/runner.h"

using namespace m2b;
using namespace std::chrono_literals;

namespace {

struct Sink : ExchangeSink {
    std::string out;
    bool ended = false;
    std::string failure;
    void on_stdout(std::string_view bytes) override { out += bytes; }
    void on_stderr(std::string_view) override {}
    void on_complete() override { ended = true; }
    void on_failure(BackendFailure, std::string_view why) override {
        ended = true;
        failure = why;
    }
};

// Slower than `yes`: each read after the script's exit finds the pipe full again.
struct SlowSink : Sink {
    void on_stdout(std::string_view bytes) override {
        out += bytes;
        std::this_thread::sleep_for(1ms);
        REQUIRE(out.size() < (16u << 20));  // else the response follows the writer, not the script
    }
};

// Loop::run with a watchdog, so the same test runs against any version of the loop.
void run_until_ended(Loop& loop, const Sink& sink) {
    std::function<void()> check = [&] {
        if (sink.ended) loop.stop();
        else loop.after(5ms, check);
    };
    loop.after(5ms, check);
    loop.after(10s, [&] { loop.stop(); });
    loop.run();
}

std::string write_script(const std::string& text) {
    char dir[] = "/tmp/m2b-cgi-test.XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    std::string path = std::string(dir) + "/script.sh";
    std::ofstream(path) << text;
    chmod(path.c_str(), 0755);
    return path;
}

// Runs `script` as a bodiless request through a CgiGateway until `sink` hears the end.
void run_script(const std::string& script, Sink& sink) {
    Loop loop;
    CgiOptions options;
    options.timeout = 10s;
    CgiGateway gateway(loop, options);
    CgiEnv env{{"SCRIPT_FILENAME", script}};
    BodySource body;
    auto exchange = gateway.start(env, body, 1, sink);
    run_until_ended(loop, sink);
}

void remove_script(const std::string& script) {
    unlink(script.c_str());
    rmdir(script.substr(0, script.rfind('/')).c_str());
}

}  // namespace

TEST_CASE("a background writer holding stdout cannot stretch the response past the script's exit") {
    std::string script = write_script(
        "#!/bin/sh\n"
        "printf 'Content-Type: text/plain\\r\\n\\r\\nfrom the script\\n'\n"
        "yes background &\n"
        "sleep 0.02\n");  // the writer is going when the script exits
    SlowSink sink;
    run_script(script, sink);
    CHECK(sink.ended);
    const std::string head = "Content-Type: text/plain\r\n\r\nfrom the script\n";
    REQUIRE(sink.out.compare(0, head.size(), head) == 0);
    // What follows was in the pipe when the script exited: whole or cut "background" lines.
    std::string rest = sink.out.substr(head.size());
    CHECK(rest.size() <= 4u << 20);
    std::string lines;
    while (lines.size() < rest.size()) lines += "background\n";
    CHECK(rest == lines.substr(0, rest.size()));
    remove_script(script);
}

TEST_CASE("an upload file shorter than its declared size fails the request instead of passing for the whole body") {
    std::string script = write_script(
        "#!/bin/sh\n"
        "cat >/dev/null\n"
        "printf 'Content-Type: text/plain\\r\\n\\r\\nread it all\\n'\n");
    std::string upload = script.substr(0, script.rfind('/')) + "/upload";
    std::ofstream(upload) << "ten bytes!";
    int fd = open(upload.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    Loop loop;
    Sink sink;
    {
        CgiGateway gateway(loop, CgiOptions{});
        CgiEnv env{{"SCRIPT_FILENAME", script}, {"CONTENT_LENGTH", "100"}};
        BodySource body;
        body.file_fd = fd;
        body.length = 100;  // Mongrel2 said 100, the file holds 10
        auto exchange = gateway.start(env, body, 1, sink);
        run_until_ended(loop, sink);
    }
    close(fd);
    CHECK(sink.ended);
    CHECK(sink.failure == "upload file shorter than its size");
    unlink(upload.c_str());
    remove_script(script);
}

TEST_CASE("a script starts with no signal blocked or ignored, whatever m2bridge blocks and ignores") {
    // As main and the loop leave it: SIGPIPE ignored, SIGCHLD (and others) blocked for signalfd,
    // and one more ignored here that the snapshot at the gateway's start must see.
    struct sigaction ignore {}, old_pipe {}, old_usr2 {};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &old_pipe);
    sigaction(SIGUSR2, &ignore, &old_usr2);
    sigset_t blocked, old_mask;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigprocmask(SIG_BLOCK, &blocked, &old_mask);
    std::string script = write_script(
        "#!/bin/sh\n"
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"
        "exec grep -E '^Sig(Ign|Blk)' /proc/self/status\n");
    Sink sink;
    run_script(script, sink);  // the gateway, and its snapshot, start here
    sigaction(SIGPIPE, &old_pipe, nullptr);
    sigaction(SIGUSR2, &old_usr2, nullptr);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    CHECK(sink.failure == "");
    auto mask = [&](const std::string& field) -> uint64_t {
        size_t at = sink.out.find(field + ":\t");
        REQUIRE(at != std::string::npos);
        return std::stoull(sink.out.substr(at + field.size() + 2, 16), nullptr, 16);
    };
    CHECK(mask("SigBlk") == 0);
    // glibc's posix_spawn (the path without cgroups) leaves its own signals 32 and 33 ignored,
    // whatever it is asked; nothing else may be.
    const uint64_t glibc_own = (uint64_t{1} << 31) | (uint64_t{1} << 32);
    CHECK((mask("SigIgn") & ~glibc_own) == 0);
    remove_script(script);
}

TEST_CASE("a script whose execve fails is reported with the errno, not run as a success") {
    std::string script = write_script("#!/nonexistent/interpreter\n");
    Sink sink;
    run_script(script, sink);
    CHECK(sink.ended);
    CHECK(sink.failure == "cannot run " + script + ": No such file or directory");
    remove_script(script);
}
