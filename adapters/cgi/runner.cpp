#include "adapters/cgi/runner.h"

#include "adapters/life_token.h"
#include "adapters/silence_timer.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace m2b {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr int kReadsPerWakeup = 4;

struct Pipe {
    int ours = -1;    // non-blocking, close-on-exec
    int theirs = -1;  // becomes 0, 1 or 2 in the child
};

bool make_pipe(Pipe& p, bool we_write) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    p.ours = we_write ? fds[1] : fds[0];
    p.theirs = we_write ? fds[0] : fds[1];
    fcntl(p.ours, F_SETFL, fcntl(p.ours, F_GETFL) | O_NONBLOCK);
    return true;
}

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

class CgiExchange final : public Exchange {
public:
    CgiExchange(CgiGateway& gateway, const CgiEnv& env, const BodySource& body, ExchangeSink& sink)
        : gateway_(gateway), loop_(gateway.loop()), env_(env), body_(body), sink_(sink),
          silence_(loop_, gateway.options().timeout, [this] {
              fail(BackendFailure::Timeout, "script silent for " + std::to_string(silence_.timeout().count()) + " ms");
          }) {}

    ~CgiExchange() override {
        close_all();
        if (pid_ > 0) {
            gateway_.forget(pid_);
            if (!exited_) gateway_.kill_group(pid_);
        }
    }

    void begin() {
        std::string script;
        for (const auto& [name, value] : env_)
            if (name == "SCRIPT_FILENAME") script = value;
        if (script.empty()) {
            fail_later(BackendFailure::Unavailable, "no SCRIPT_FILENAME to run");
            return;
        }
        Pipe in, out, err;
        if (!make_pipe(in, true) || !make_pipe(out, false) || !make_pipe(err, false)) {
            int e = errno;
            for (Pipe* p : {&in, &out, &err}) {
                close_fd(p->ours);
                close_fd(p->theirs);
            }
            fail_later(BackendFailure::Overloaded, std::string("pipe: ") + strerror(e));
            return;
        }
        std::string dir = script.substr(0, script.rfind('/'));
        if (dir.empty()) dir = "/";

        // The environment is built from scratch: the request's variables, a
        // fixed PATH, and only the names the user allowed.
        std::vector<std::string> strings;
        strings.reserve(env_.size() + 1 + gateway_.options().passed_env.size());
        for (const auto& [name, value] : env_) strings.push_back(name + "=" + value);
        strings.emplace_back(kCgiPath);
        for (const auto& e : gateway_.options().passed_env) strings.push_back(e);
        std::vector<char*> envp;
        for (auto& s : strings) envp.push_back(s.data());
        envp.push_back(nullptr);
        // argv is the script alone: never words from the query string (CVE-2012-1823).
        std::vector<char*> argv{script.data(), nullptr};

        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in.theirs, 0);
        posix_spawn_file_actions_adddup2(&actions, out.theirs, 1);
        posix_spawn_file_actions_adddup2(&actions, err.theirs, 2);
        posix_spawn_file_actions_addclosefrom_np(&actions, 3);
        posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);  // m2bridge ignores SIGPIPE; scripts must not
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        pid_t pid = -1;
        int rc = posix_spawn(&pid, script.c_str(), &actions, &attr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        close_fd(in.theirs);
        close_fd(out.theirs);
        close_fd(err.theirs);
        stdin_ = in.ours;
        stdout_ = out.ours;
        stderr_ = err.ours;
        if (rc != 0) {
            close_all();
            BackendFailure kind = rc == EAGAIN ? BackendFailure::Overloaded : BackendFailure::Unavailable;
            fail_later(kind, "cannot run " + script + ": " + strerror(rc));
            return;
        }
        pid_ = pid;
        gateway_.on_exit(pid_, life_.guard([this](int status) { on_child_exit(status); }));
        loop_.watch(stdout_, EPOLLIN, [this](uint32_t) { read_from(stdout_, true); });
        loop_.watch(stderr_, EPOLLIN, [this](uint32_t) { read_from(stderr_, false); });
        loop_.watch(stdin_, EPOLLOUT, [this](uint32_t) { write_body(); });
        silence_.start();
    }

    void set_paused(bool paused) override {
        if (paused_ == paused || done_) return;
        paused_ = paused;
        silence_.set_paused(paused);
        if (stdout_ >= 0) loop_.set_events(stdout_, paused ? 0u : static_cast<uint32_t>(EPOLLIN));
        if (!paused && exited_) loop_.post(life_.guard([this] { finish_after_exit(); }));
    }

    void cancel() override {
        done_ = true;
        silence_.stop();
        close_all();
    }

private:
    void write_body() {
        if (done_ || stdin_ < 0) return;
        for (;;) {
            if (chunk_pos_ == chunk_.size()) {
                chunk_.clear();
                chunk_pos_ = 0;
                if (body_.file_fd < 0) {
                    if (body_offset_ == 0 && !body_.bytes.empty()) chunk_ = std::string(body_.bytes);
                    body_offset_ = body_.bytes.size();
                } else if (body_offset_ < body_.length) {
                    chunk_.resize(static_cast<size_t>(std::min<uint64_t>(256 * 1024, body_.length - body_offset_)));
                    ssize_t n = pread(body_.file_fd, chunk_.data(), chunk_.size(), static_cast<off_t>(body_offset_));
                    if (n <= 0) {
                        chunk_.clear();
                        body_offset_ = body_.length;  // the file shrank: end the body here
                    } else {
                        chunk_.resize(static_cast<size_t>(n));
                        body_offset_ += static_cast<uint64_t>(n);
                    }
                }
                if (chunk_.empty()) {
                    // Exactly CONTENT_LENGTH bytes, then EOF.
                    loop_.unwatch(stdin_);
                    close_fd(stdin_);
                    return;
                }
            }
            ssize_t n = ::write(stdin_, chunk_.data() + chunk_pos_, chunk_.size() - chunk_pos_);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                // The script stopped reading (EPIPE): keep reading what it prints.
                loop_.unwatch(stdin_);
                close_fd(stdin_);
                return;
            }
            chunk_pos_ += static_cast<size_t>(n);
            silence_.activity();
        }
    }

    // Returns false at EOF or error.
    bool read_from(int& fd, bool is_stdout) {
        if (done_ || fd < 0) return false;
        char buf[kReadChunk];
        for (int i = 0; i < kReadsPerWakeup; ++i) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return true;
                n = 0;
            }
            if (n == 0) {
                loop_.unwatch(fd);
                close_fd(fd);
                if (is_stdout) complete();  // end of response = EOF on stdout
                return false;
            }
            silence_.activity();
            std::string_view bytes(buf, static_cast<size_t>(n));
            if (is_stdout)
                sink_.on_stdout(bytes);
            else
                sink_.on_stderr(bytes);
            if (done_) return false;
            if (is_stdout && paused_) return true;
        }
        return true;
    }

    void on_child_exit(int status) {
        exited_ = true;
        exit_status_ = status;
        gateway_.forget(pid_);
        finish_after_exit();
    }

    // The script has exited: everything it wrote is in the pipes. Read it and
    // end the response, even if a background child still holds stdout open.
    void finish_after_exit() {
        if (done_) return;
        if (stderr_ >= 0) read_from(stderr_, false);
        // Drain stdout until it would block (or EOF completes the exchange).
        while (!done_ && stdout_ >= 0 && !paused_) {
            char buf[kReadChunk];
            ssize_t n = ::read(stdout_, buf, sizeof buf);
            if (n > 0) {
                sink_.on_stdout(std::string_view(buf, static_cast<size_t>(n)));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) {
                // A background process kept stdout open: the response ends with the script.
                gateway_.kill_group(pid_);
            }
            loop_.unwatch(stdout_);
            close_fd(stdout_);
            complete();
            return;
        }
    }

    void complete() {
        if (done_) return;
        done_ = true;
        silence_.stop();
        close_all();
        sink_.on_complete();
    }

    void fail(BackendFailure kind, const std::string& why) {
        if (done_) return;
        done_ = true;
        silence_.stop();
        close_all();
        if (pid_ > 0 && !exited_) gateway_.kill_group(pid_);
        sink_.on_failure(kind, why);
    }

    void fail_later(BackendFailure kind, std::string why) {
        loop_.post(life_.guard([this, kind, why] { fail(kind, why); }));
    }

    void close_all() {
        for (int* fd : {&stdin_, &stdout_, &stderr_}) {
            if (*fd < 0) continue;
            loop_.unwatch(*fd);
            close_fd(*fd);
        }
    }

    CgiGateway& gateway_;
    Loop& loop_;
    const CgiEnv& env_;
    const BodySource& body_;
    ExchangeSink& sink_;
    LifeToken life_;
    SilenceTimer silence_;

    pid_t pid_ = -1;
    bool exited_ = false;
    int exit_status_ = 0;
    int stdin_ = -1, stdout_ = -1, stderr_ = -1;
    bool paused_ = false;
    bool done_ = false;
    std::string chunk_;
    size_t chunk_pos_ = 0;
    uint64_t body_offset_ = 0;
};

}  // namespace

CgiGateway::CgiGateway(Loop& loop, CgiOptions options) : loop_(loop), options_(std::move(options)) {
    // Orphaned grandchildren of scripts become ours, so they are reaped too.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    loop_.on_signal(SIGCHLD, [this] { reap(); });
}

CgiGateway::~CgiGateway() {
    for (auto& [pid, cb] : children_) ::kill(-pid, SIGKILL);
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

void CgiGateway::on_exit(pid_t pid, std::function<void(int)> callback) { children_[pid] = std::move(callback); }

void CgiGateway::forget(pid_t pid) {
    auto it = children_.find(pid);
    if (it != children_.end()) it->second = nullptr;  // still reaped, nobody told
}

void CgiGateway::kill_group(pid_t pgid) {
    if (::kill(-pgid, SIGTERM) != 0) return;  // the whole group is gone already
    loop_.after(options_.kill_grace, [pgid] { ::kill(-pgid, SIGKILL); });
}

void CgiGateway::reap() {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = children_.find(pid);
        if (it == children_.end()) continue;  // a grandchild we adopted
        auto callback = std::move(it->second);
        children_.erase(it);
        if (callback) callback(status);
    }
}

std::unique_ptr<Exchange> CgiGateway::start(const CgiEnv& env, const BodySource& body, uint64_t, ExchangeSink& sink) {
    auto exchange = std::make_unique<CgiExchange>(*this, env, body, sink);
    exchange->begin();
    return exchange;
}

}  // namespace m2b
