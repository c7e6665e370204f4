// The FastCGI spawner with real processes on a real loop: small shell
// commands stand in for the app and record their pids (and start times) in
// files, so the test sees the copies as a user would (ps, /proc).
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "adapters/fastcgi/spawner.h"
#include "base/log.h"

using namespace m2b;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A scratch directory, also used as RUNTIME_DIRECTORY so the socket's
// directory lands in it (and what is left behind can be seen).
struct Scratch {
    std::string path;
    std::string old_runtime;
    bool had_runtime = false;
    Scratch() {
        char dir[] = "/tmp/m2b-spawn-test.XXXXXX";
        REQUIRE(mkdtemp(dir) != nullptr);
        path = dir;
        if (const char* old = getenv("RUNTIME_DIRECTORY")) {
            had_runtime = true;
            old_runtime = old;
        }
        setenv("RUNTIME_DIRECTORY", (path + "/run").c_str(), 1);
        fs::create_directory(path + "/run");
    }
    ~Scratch() {
        if (had_runtime) setenv("RUNTIME_DIRECTORY", old_runtime.c_str(), 1);
        else unsetenv("RUNTIME_DIRECTORY");
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
    std::vector<std::string> runtime_entries() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path + "/run")) names.push_back(e.path().string());
        return names;
    }
};

// m2bridge's log lines (warnings and up), which go to stderr, in a file for the test to read.
struct StderrCapture {
    std::string path;
    int saved = -1;
    log::Level old_level = log::Level::Error;
    explicit StderrCapture(std::string file) : path(std::move(file)) {
        for (auto level : {log::Level::Debug, log::Level::Info, log::Level::Warn, log::Level::Error})
            if (log::enabled(level)) {
                old_level = level;
                break;
            }
        log::set_level(log::Level::Warn);
        fflush(stderr);
        saved = dup(2);
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        dup2(fd, 2);
        close(fd);
    }
    ~StderrCapture() {
        log::set_level(old_level);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
    }
    std::string text() const {
        fflush(stderr);
        std::ifstream in(path);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
};

std::vector<long long> read_numbers(const std::string& file) {
    std::vector<long long> out;
    std::ifstream in(file);
    long long n;
    while (in >> n) out.push_back(n);
    return out;
}

std::vector<pid_t> read_pids(const std::string& file) {
    std::vector<pid_t> out;
    for (long long n : read_numbers(file)) out.push_back(static_cast<pid_t>(n));
    return out;
}

std::string slurp(const std::string& file) {
    std::ifstream in(file);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string comm(pid_t pid) {
    std::string name = slurp("/proc/" + std::to_string(pid) + "/comm");
    if (!name.empty() && name.back() == '\n') name.pop_back();
    return name;
}

// Gone: no such process, or a zombie nobody will reap (an orphan adopted by
// this test process, which earlier tests made a subreaper), reaped here.
bool gone(pid_t pid) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return true;
    if (kill(pid, 0) != 0) return errno == ESRCH;
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

bool run_until(Loop& loop, const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    auto deadline = Loop::now() + limit;
    while (!done()) {
        if (Loop::now() > deadline) return false;
        loop.run_once(10);
    }
    return true;
}

void run_for(Loop& loop, std::chrono::milliseconds span) {
    auto deadline = Loop::now() + span;
    while (Loop::now() < deadline) loop.run_once(10);
}

// The copies have exec'd the command (sleep), not only forked.
bool all_exec(const std::vector<pid_t>& pids, const std::string& name) {
    return std::all_of(pids.begin(), pids.end(), [&](pid_t p) { return comm(p) == name; });
}

std::string socket_path(const FastcgiSpawner& spawner) {
    std::string address = spawner.address();
    REQUIRE(address.rfind("unix:", 0) == 0);
    return address.substr(5);
}

// The socket inode a process has on `fd`, from /proc/PID/fd.
std::string socket_inode(pid_t pid, int fd) {
    std::error_code ec;
    auto target = fs::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec).string();
    if (ec || target.rfind("socket:[", 0) != 0) return "";
    return target.substr(8, target.size() - 9);
}

// /proc/net/unix: "Num RefCount Protocol Flags Type St Inode Path"; flag
// 00010000 (__SO_ACCEPTCON) marks a listening socket.
bool listening_unix_socket(const std::string& inode, const std::string& path) {
    std::ifstream in("/proc/net/unix");
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string num, refs, proto, flags, type, st, ino, where;
        fields >> num >> refs >> proto >> flags >> type >> st >> ino >> where;
        if (ino == inode) return flags == "00010000" && where == path;
    }
    return false;
}

std::set<int> open_fds(pid_t pid) {
    std::set<int> fds;
    for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        fds.insert(std::stoi(e.path().filename().string()));
    return fds;
}

std::string status_field(pid_t pid, const std::string& name) {
    std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(name + ":", 0) == 0) {
            std::string value = line.substr(name.size() + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            return value;
        }
    return "";
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// An app that records its pid, then becomes `sleep` (same pid).
SpawnOptions sleeper(const Scratch& scratch, size_t instances, const std::string& prelude = "") {
    SpawnOptions options;
    options.command = {"sh", "-c", prelude + "echo $$ >> " + scratch.file("pids") + "; exec sleep 30"};
    options.instances = instances;
    options.name = "test";
    return options;
}

}  // namespace

TEST_CASE("spawn: N copies share one listening socket on fd 0, each in its own group, nothing else open") {
    Scratch scratch;
    Loop loop;
    // What m2bridge does to itself, which the app must not inherit.
    struct sigaction ignore {}, old_pipe {};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &old_pipe);
    sigset_t usr1, old_mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old_mask);

    FastcgiSpawner spawner(loop, sleeper(scratch, 3));
    std::string error = spawner.start();
    sigaction(SIGPIPE, &old_pipe, nullptr);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    REQUIRE(error == "");
    CHECK(spawner.running() == 3);

    std::string path = socket_path(spawner);
    CHECK(fs::path(path).filename() == "fcgi.sock");
    std::string dir = fs::path(path).parent_path().string();
    CHECK(fs::path(dir).parent_path() == fs::path(scratch.path + "/run"));
    struct stat st {};
    REQUIRE(stat(dir.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));

    REQUIRE(run_until(loop, [&] {
        auto pids = read_pids(scratch.file("pids"));
        return pids.size() == 3 && all_exec(pids, "sleep");
    }));
    auto pids = read_pids(scratch.file("pids"));
    // The new name shows a moment before execve closes the close-on-exec descriptors: let it finish.
    run_until(loop, [&] {
        return std::all_of(pids.begin(), pids.end(), [](pid_t p) { return open_fds(p) == std::set<int>{0, 1, 2}; });
    }, 1s);
    std::set<std::string> inodes;
    for (pid_t pid : pids) {
        CAPTURE(pid);
        std::string inode = socket_inode(pid, 0);
        CHECK(listening_unix_socket(inode, path));
        inodes.insert(inode);
        CHECK(open_fds(pid) == std::set<int>{0, 1, 2});
        CHECK(same_file("/proc/" + std::to_string(pid) + "/fd/2", "/proc/self/fd/2"));
        CHECK(getpgid(pid) == pid);
        CHECK(getsid(pid) == pid);
        CHECK(status_field(pid, "SigBlk") == "0000000000000000");
        CHECK(status_field(pid, "SigIgn") == "0000000000000000");
    }
    CHECK(inodes.size() == 1);  // one socket, shared

    // Connections queue on it: the FastCGI client can connect.
    int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    CHECK(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    close(client);
}

TEST_CASE("spawn: a copy killed with SIGKILL is logged and comes back as a new process") {
    Scratch scratch;
    StderrCapture log(scratch.file("log"));
    Loop loop;
    FastcgiSpawner spawner(loop, sleeper(scratch, 2));
    REQUIRE(spawner.start() == "");
    REQUIRE(run_until(loop, [&] { return read_pids(scratch.file("pids")).size() == 2; }));
    pid_t victim = read_pids(scratch.file("pids"))[0];
    auto killed_at = Loop::now();
    REQUIRE(kill(victim, SIGKILL) == 0);

    REQUIRE(run_until(loop, [&] { return read_pids(scratch.file("pids")).size() == 3 && spawner.running() == 2; }));
    auto back_after = Loop::now() - killed_at;
    auto pids = read_pids(scratch.file("pids"));
    CHECK(pids[2] != victim);
    CHECK(gone(victim));  // reaped by the spawner
    CHECK(spawner.restarts() == 1);
    CHECK(back_after >= 90ms);  // the first back-off, not at once
    std::string text = log.text();
    CAPTURE(text);
    CHECK(text.find("fastcgi app test copy ") != std::string::npos);
    CHECK(text.find("/2 (pid " + std::to_string(victim) + ") killed by signal 9 (SIGKILL); restarting in 100 ms") !=
          std::string::npos);
}

TEST_CASE("spawn: a program that exits at once is restarted with growing delays, not in a busy loop") {
    Scratch scratch;
    StderrCapture log(scratch.file("log"));
    Loop loop;
    SpawnOptions options;
    options.command = {"/bin/sh", "-c", "date +%s%N >> " + scratch.file("starts") + "; exit 3"};
    FastcgiSpawner spawner(loop, options);
    REQUIRE(spawner.start() == "");
    run_for(loop, 1700ms);  // starts at about 0, 0.1, 0.3, 0.7, 1.5 s
    CHECK(spawner.restarts() >= 3);
    CHECK(spawner.restarts() <= 5);
    auto starts = read_numbers(scratch.file("starts"));
    REQUIRE(starts.size() >= 4);
    std::vector<double> gaps_ms;
    for (size_t i = 1; i < starts.size(); ++i) gaps_ms.push_back((starts[i] - starts[i - 1]) / 1e6);
    CAPTURE(gaps_ms);
    // Start to start is at least the back-off (the copy dies after it starts);
    // only lower bounds: a loaded machine makes every gap longer.
    for (size_t i = 0; i < gaps_ms.size(); ++i) CHECK(gaps_ms[i] >= 0.9 * (100 << i));
    std::string text = log.text();
    CHECK(text.find("exited with status 3; restarting in 100 ms") != std::string::npos);
    CHECK(text.find("exited with status 3; restarting in 200 ms") != std::string::npos);
    CHECK(text.find("exited with status 3; restarting in 400 ms") != std::string::npos);
}

TEST_CASE("spawn: a copy that lived long enough is restarted after the shortest delay again") {
    Scratch scratch;
    StderrCapture log(scratch.file("log"));
    Loop loop;
    SpawnOptions options;
    options.command = {"sh", "-c", "date +%s%N >> " + scratch.file("starts") + "; sleep 0.25; exit 1"};
    options.stable_after = 150ms;
    FastcgiSpawner spawner(loop, options);
    REQUIRE(spawner.start() == "");
    REQUIRE(run_until(loop, [&] { return read_numbers(scratch.file("starts")).size() >= 5; }));
    // Each copy lives 250 ms, past stable_after: every restart waits the
    // shortest delay (without the reset: 100, 200, 400, 800). Read from the
    // log, not the clock, so a loaded machine cannot fail it.
    std::string text = log.text();
    CAPTURE(text);
    size_t restarts = 0;
    for (size_t at = 0; (at = text.find("restarting in 100 ms", at)) != std::string::npos; ++at) ++restarts;
    CHECK(restarts >= 4);
    CHECK(text.find("restarting in 200 ms") == std::string::npos);
}

TEST_CASE("spawn: a program that can no longer be executed at restart is a death like any other") {
    Scratch scratch;
    StderrCapture log(scratch.file("log"));
    std::string app = scratch.file("app.sh");
    std::ofstream(app) << "#!/bin/sh\necho $$ >> " << scratch.file("pids") << "\nexec sleep 30\n";
    chmod(app.c_str(), 0755);
    Loop loop;
    SpawnOptions options;
    options.command = {app};
    FastcgiSpawner spawner(loop, options);
    REQUIRE(spawner.start() == "");
    REQUIRE(run_until(loop, [&] { return read_pids(scratch.file("pids")).size() == 1; }));
    REQUIRE(unlink(app.c_str()) == 0);
    REQUIRE(kill(read_pids(scratch.file("pids"))[0], SIGKILL) == 0);
    REQUIRE(run_until(loop, [&] { return spawner.restarts() >= 2; }, 2s));
    std::string text = log.text();
    CHECK(text.find("could not execute " + app + ": No such file or directory; restarting in 200 ms") !=
          std::string::npos);
}

TEST_CASE("spawn: stop() terminates every copy, makes no restart, and then calls done") {
    Scratch scratch;
    Loop loop;
    FastcgiSpawner spawner(loop, sleeper(scratch, 3));
    REQUIRE(spawner.start() == "");
    REQUIRE(run_until(loop, [&] {
        auto pids = read_pids(scratch.file("pids"));
        return pids.size() == 3 && all_exec(pids, "sleep");
    }));
    auto pids = read_pids(scratch.file("pids"));
    int done_calls = 0;
    auto began = Loop::now();
    spawner.stop([&] { ++done_calls; });
    CHECK(done_calls == 0);  // never from inside stop()
    REQUIRE(run_until(loop, [&] { return done_calls > 0; }, 3s));
    CHECK(Loop::now() - began < 4s);  // SIGTERM did it, not the SIGKILL 5 s later
    run_for(loop, 300ms);             // longer than the first back-off: no restart comes
    CHECK(done_calls == 1);
    CHECK(spawner.running() == 0);
    CHECK(spawner.restarts() == 0);
    CHECK(read_pids(scratch.file("pids")).size() == 3);
    for (pid_t pid : pids) {
        CAPTURE(pid);
        CHECK((kill(pid, 0) != 0 && errno == ESRCH));  // exited and reaped
    }
}

TEST_CASE("spawn: stop() SIGKILLs a copy that ignores SIGTERM once the grace time is over") {
    Scratch scratch;
    Loop loop;
    SpawnOptions options = sleeper(scratch, 2, "trap '' TERM; ");
    options.kill_grace = 300ms;
    FastcgiSpawner spawner(loop, options);
    REQUIRE(spawner.start() == "");
    REQUIRE(run_until(loop, [&] {
        auto pids = read_pids(scratch.file("pids"));
        return pids.size() == 2 && all_exec(pids, "sleep");
    }));
    bool done = false;
    auto began = Loop::now();
    spawner.stop([&] { done = true; });
    REQUIRE(run_until(loop, [&] { return done; }, 3s));
    CHECK(Loop::now() - began >= 290ms);
    for (pid_t pid : read_pids(scratch.file("pids"))) CHECK((kill(pid, 0) != 0 && errno == ESRCH));
}

TEST_CASE("spawn: the destructor leaves no copy running and removes the socket and its directory") {
    Scratch scratch;
    std::vector<pid_t> pids;
    std::string path;
    {
        Loop loop;
        FastcgiSpawner spawner(loop, sleeper(scratch, 2));
        REQUIRE(spawner.start() == "");
        path = socket_path(spawner);
        REQUIRE(run_until(loop, [&] { return read_pids(scratch.file("pids")).size() == 2; }));
        pids = read_pids(scratch.file("pids"));
        REQUIRE(fs::exists(path));
    }
    for (pid_t pid : pids) {
        CAPTURE(pid);
        CHECK((kill(pid, 0) != 0 && errno == ESRCH));
    }
    CHECK_FALSE(fs::exists(path));
    CHECK(scratch.runtime_entries().empty());
}

TEST_CASE("spawn: copies die with m2bridge even when it is SIGKILLed") {
    Scratch scratch;
    pid_t bridge = fork();
    REQUIRE(bridge >= 0);
    if (bridge == 0) {
        // Stands in for m2bridge: starts the copies, serves until killed.
        try {
            Loop loop;
            FastcgiSpawner spawner(loop, sleeper(scratch, 2));
            if (spawner.start() != "") _exit(1);
            for (;;) loop.run_once(1000);
        } catch (...) {
        }
        _exit(1);
    }
    Loop loop;
    REQUIRE(run_until(loop, [&] {
        auto pids = read_pids(scratch.file("pids"));
        return pids.size() == 2 && all_exec(pids, "sleep");
    }));
    auto pids = read_pids(scratch.file("pids"));
    REQUIRE(kill(bridge, SIGKILL) == 0);
    REQUIRE(waitpid(bridge, nullptr, 0) == bridge);
    for (pid_t pid : pids) {
        CAPTURE(pid);
        CHECK(run_until(loop, [&] { return gone(pid); }, 3s));
    }
}

TEST_CASE("spawn: start() refuses a command that cannot be run, naming it, and leaves nothing behind") {
    Scratch scratch;
    Loop loop;
    {
        SpawnOptions options;
        options.command = {"m2b-no-such-command", "--flag"};
        FastcgiSpawner spawner(loop, options);
        std::string error = spawner.start();
        CHECK(error.find("m2b-no-such-command") != std::string::npos);
        CHECK(error.find("not found") != std::string::npos);
        CHECK(spawner.address() == "");
        CHECK(spawner.running() == 0);
    }
    {
        std::string data = scratch.file("data.txt");
        std::ofstream(data) << "not a program\n";
        SpawnOptions options;
        options.command = {data};
        FastcgiSpawner spawner(loop, options);
        std::string error = spawner.start();
        CHECK(error.find(data) != std::string::npos);
        CHECK(error.find("Permission denied") != std::string::npos);
    }
    {
        SpawnOptions options;
        options.command = {"/nonexistent/dir/app"};
        FastcgiSpawner spawner(loop, options);
        std::string error = spawner.start();
        CHECK(error == "cannot run /nonexistent/dir/app: No such file or directory");
    }
    CHECK(scratch.runtime_entries().empty());
}
