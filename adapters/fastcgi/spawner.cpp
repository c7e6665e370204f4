#include "adapters/fastcgi/spawner.h"
#include "adapters/child_claims.h"
#include "base/exec_child.h"

#include "base/log.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace m2b {

namespace {

constexpr int kListenBacklog = 128;

// Variables systemd sets for m2bridge itself: a copy that saw them could
// notify or take sockets in m2bridge's name.
constexpr const char* kPrivateEnv[] = {"NOTIFY_SOCKET=", "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=",
                                       "WATCHDOG_PID=", "WATCHDOG_USEC="};

std::string errno_text(int error) { return strerror(error); }

// System calls, not glibc 2.36's <sys/pidfd.h> (its declarations lack extern "C").
int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int signo) {
    return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0));
}

// A descriptor that must not be 0, 1 or 2 in m2bridge (they may be closed when
// it starts): in the child, dup2 onto 0..2 would overwrite it. -1 on failure.
int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    return moved;
}

// "" and `path` set, or why `name` cannot be run. A name with a slash is
// taken as it is; a bare name is looked up in PATH, as a shell would.
std::string resolve_program(const std::string& name, std::string& path) {
    auto runnable = [](const std::string& candidate, int& error) {
        struct stat st {};
        if (stat(candidate.c_str(), &st) != 0) {
            error = errno;
            return false;
        }
        if (!S_ISREG(st.st_mode)) {
            error = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
            return false;
        }
        if (access(candidate.c_str(), X_OK) != 0) {
            error = errno;
            return false;
        }
        return true;
    };
    if (name.empty()) return "no command to run";
    int error = 0;
    if (name.find('/') != std::string::npos) {
        if (!runnable(name, error)) return "cannot run " + name + ": " + errno_text(error);
        path = name;
        return "";
    }
    const char* env_path = getenv("PATH");
    std::string search = env_path ? env_path : "/usr/local/bin:/usr/bin:/bin";
    size_t begin = 0;
    for (;;) {
        size_t end = search.find(':', begin);
        std::string dir = search.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
        std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
        if (runnable(candidate, error)) {
            path = candidate;
            return "";
        }
        if (end == std::string::npos) break;
        begin = end + 1;
    }
    return "cannot run " + name + ": command not found in PATH (" + search + ")";
}

// Everything the child needs, prepared before fork: after fork a process
// with other threads (ZeroMQ's) may only make async-signal-safe calls, so no
// allocation, no locks, no logging until execve.
struct ExecPlan {
    const char* path;
    char* const* argv;
    char* const* envp;
    int listener;  // becomes fd 0
    int report;    // close-on-exec pipe: the errno if execve fails
    pid_t parent;
    SignalsToReset signals;  // taken before fork
};

[[noreturn]] void exec_copy(const ExecPlan& plan) {
    int error = 0;
    // Dies with m2bridge, even with a SIGKILLed one. (The "parent" of
    // PDEATHSIG is the forking thread: copies are started from the loop
    // thread, which lives as long as m2bridge.) If m2bridge died before the
    // prctl, the signal will never come: the ppid check closes that race.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) error = errno;
    else if (getppid() != plan.parent) _exit(127);
    // A session (and so a process group) of its own: stop() signals the copy
    // with whatever it forked, and a terminal's Ctrl-C reaches only m2bridge.
    else if (setsid() < 0) error = errno;
    if (error == 0) {
        reset_signals_for_exec(plan.signals);
        // fd 0: the listening socket (FCGI_LISTENSOCK_FILENO). fd 1: m2bridge's
        // stderr too, so what an app prints by mistake reaches the log instead
        // of vanishing. fd 2: m2bridge's stderr, where libfcgi apps report.
        // (listener and report are above 2, see above_stdio, so dup2 cannot overwrite them.)
        if (dup2(plan.listener, 0) < 0) error = errno;
        if (error == 0) {
            dup2(2, 1);  // fails only if m2bridge has no stderr: then the app has none either
            // Everything else closes at execve; the report pipe stays open until then.
            close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
            execve(plan.path, plan.argv, plan.envp);
            error = errno;
        }
    }
    (void)!::write(plan.report, &error, sizeof error);
    _exit(127);
}

std::string describe_exit(const siginfo_t& info) {
    switch (info.si_code) {
    case CLD_EXITED:
        return "exited with status " + std::to_string(info.si_status);
    case CLD_KILLED:
    case CLD_DUMPED: {
        const char* abbrev = sigabbrev_np(info.si_status);
        return "killed by signal " + std::to_string(info.si_status) +
               (abbrev ? std::string(" (SIG") + abbrev + ")" : "") + (info.si_code == CLD_DUMPED ? ", core dumped" : "");
    }
    default:
        return "ended (si_code " + std::to_string(info.si_code) + ")";
    }
}

}  // namespace

void FastcgiSpawner::SocketDir::remove() {
    if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
    socket_path_.clear();
    dir_.clear();
}

std::string FastcgiSpawner::SocketDir::create() {
    // systemd's RuntimeDirectory= (/run/m2bridge) when there is one: it is
    // removed with the service even if m2bridge could not clean up.
    std::string base = "/tmp";
    if (const char* runtime = getenv("RUNTIME_DIRECTORY"); runtime && *runtime) {
        base = runtime;
        base = base.substr(0, base.find(':'));  // several directories: the first
    }
    std::string pattern = base + "/m2bridge-fcgi.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr)  // mode 0700: only m2bridge's user reaches the socket
        return "cannot create a directory for the FastCGI socket in " + base + ": " + errno_text(errno);
    dir_ = pattern;
    socket_path_ = dir_ + "/fcgi.sock";
    return "";
}

FastcgiSpawner::FastcgiSpawner(Loop& loop, SpawnOptions options) : loop_(loop), options_(std::move(options)) {
    if (options_.name.empty() && !options_.command.empty()) {
        const std::string& program = options_.command.front();
        options_.name = program.substr(program.rfind('/') + 1);
    }
}

FastcgiSpawner::~FastcgiSpawner() { kill_and_reap_all(); }

std::string FastcgiSpawner::address() const {
    return socket_dir_.socket_path().empty() ? "" : "unix:" + socket_dir_.socket_path();
}

size_t FastcgiSpawner::running() const {
    return static_cast<size_t>(
        std::count_if(copies_.begin(), copies_.end(), [](const Copy& c) { return c.state == CopyState::Running; }));
}

std::string FastcgiSpawner::label(const Copy& copy) const {
    return log::cat("fastcgi app ", options_.name, " copy ", copy.index, "/", copies_.size(), " (pid ", copy.pid, ")");
}

std::string FastcgiSpawner::start() {
    if (state_ != State::Idle) return "fastcgi app " + options_.name + " already started";
    if (options_.command.empty()) return "no command to spawn";
    if (options_.instances == 0) return "fastcgi app " + options_.name + ": instances must be at least 1";
    if (std::string error = resolve_program(options_.command.front(), program_); !error.empty()) return error;

    argv_strings_ = options_.command;
    for (auto& s : argv_strings_) argv_.push_back(s.data());
    argv_.push_back(nullptr);
    for (char** e = environ; e && *e; ++e) {
        std::string_view entry(*e);
        bool private_entry = std::any_of(std::begin(kPrivateEnv), std::end(kPrivateEnv),
                                         [&](const char* prefix) { return entry.starts_with(prefix); });
        if (!private_entry) env_strings_.emplace_back(entry);
    }
    for (auto& s : env_strings_) envp_.push_back(s.data());
    envp_.push_back(nullptr);

    // On failure nothing is left: no copy, no socket, no directory.
    auto fail = [this](std::string error) {
        kill_and_reap_all();
        copies_.clear();
        listener_.reset();
        socket_dir_.remove();
        return error;
    };
    if (std::string error = socket_dir_.create(); !error.empty()) return fail(error);
    const std::string path = socket_dir_.socket_path();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return fail("FastCGI socket path too long: " + path);
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    // Blocking on purpose: O_NONBLOCK belongs to the open file the copies
    // share, and libfcgi's accept() on fd 0 expects to wait.
    listener_ = UniqueFd(above_stdio(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)));
    if (!listener_) return fail("cannot create the FastCGI socket " + path + ": " + errno_text(errno));
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_.get(), kListenBacklog) != 0)
        return fail("cannot listen on " + path + ": " + errno_text(errno));

    // All copies accept() on this one socket: the kernel hands each connection
    // to one waiting copy, which spreads requests over them. While every copy
    // is busy or restarting, connections wait in the backlog (m2bridge holds
    // the socket too) instead of being refused.
    copies_.resize(options_.instances);
    state_ = State::Running;
    for (size_t i = 0; i < copies_.size(); ++i) {
        copies_[i].index = i + 1;
        if (std::string error = launch(copies_[i]); !error.empty())
            return fail("cannot start " + program_ + ": " + error);
    }
    log::info("fastcgi app ", options_.name, ": ", copies_.size(), " copies of ", program_, " on ", address());
    return "";
}

std::string FastcgiSpawner::launch(Copy& copy) {
    copy.started = Loop::now();
    int report[2];
    if (pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) return "pipe: " + errno_text(errno);
    UniqueFd report_read(report[0]);
    UniqueFd report_write(above_stdio(report[1]));
    if (!report_write) return "pipe: " + errno_text(errno);

    // fork + exec, not posix_spawn: PR_SET_PDEATHSIG has to be set in the child.
    ExecPlan plan{program_.c_str(), argv_.data(), envp_.data(), listener_.get(), report_write.get(), getpid(),
                  signals_not_default()};
    pid_t pid = fork();
    if (pid < 0) return "fork: " + errno_text(errno);
    if (pid == 0) exec_copy(plan);
    report_write.reset();
    child_claims::claim(pid);

    // No other code reaps in between (the loop runs on this thread), so the pid is still this child's.
    UniqueFd pidfd(pidfd_open(pid));
    if (!pidfd || !loop_.watch(pidfd.get(), EPOLLIN, [this, slot = copy.index - 1](uint32_t) { on_exit(slot); })) {
        int error = errno;
        // Unsupervised it must not run: kill it and reap it now (quick after SIGKILL).
        ::kill(pid, SIGKILL);
        while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        child_claims::release(pid);
        return (pidfd ? "cannot watch pidfd: " : "pidfd_open: ") + errno_text(error);
    }
    copy.pid = pid;
    copy.pidfd = std::move(pidfd);
    copy.exec_report = std::move(report_read);
    copy.state = CopyState::Running;
    log::debug(label(copy), " started");
    return "";
}

void FastcgiSpawner::on_exit(size_t slot) {
    Copy& copy = copies_[slot];
    if (copy.state != CopyState::Running) return;
    siginfo_t info{};
    int rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(copy.pidfd.get()), &info, WEXITED | WNOHANG);
    if (rc == 0 && info.si_pid == 0) return;  // not exited after all
    if (rc < 0 && errno == EINTR) return;     // still readable: next turn
    std::string what = rc == 0 ? describe_exit(info) : "exited (status taken by another waitpid)";
    int exec_error = 0;
    if (::read(copy.exec_report.get(), &exec_error, sizeof exec_error) == static_cast<ssize_t>(sizeof exec_error))
        what = "could not execute " + program_ + ": " + errno_text(exec_error);
    std::string who = label(copy);
    // What the copy forked is part of it: left running, it would keep
    // accepting on the shared socket. The group id cannot have been reused:
    // until now the copy was unreaped.
    if (rc == 0) ::kill(-copy.pid, SIGKILL);
    loop_.unwatch(copy.pidfd.get());
    copy.pidfd.reset();
    copy.exec_report.reset();
    child_claims::release(copy.pid);
    copy.pid = -1;
    if (state_ == State::Running) {
        schedule_restart(copy, who + " " + what);
        return;
    }
    copy.state = CopyState::Stopped;
    log::info(who, " ", what);
    finish_stop_if_done();
}

void FastcgiSpawner::schedule_restart(Copy& copy, const std::string& why) {
    // Back-off: a program that dies at once is not started in a busy loop.
    if (Loop::now() - copy.started >= options_.stable_after) copy.backoff = kFirstBackoff;
    auto delay = copy.backoff;
    copy.backoff = std::min(copy.backoff * 2, kMaxBackoff);
    copy.state = CopyState::WaitingToRestart;
    copy.restart_timer = loop_.after(delay, life_.guard([this, slot = copy.index - 1] { restart(slot); }));
    log::warn(why, "; restarting in ", delay.count(), " ms");
}

void FastcgiSpawner::restart(size_t slot) {
    Copy& copy = copies_[slot];
    copy.restart_timer = 0;
    if (state_ != State::Running || copy.state != CopyState::WaitingToRestart) return;
    ++restarts_;
    if (std::string error = launch(copy); !error.empty())
        schedule_restart(copy, log::cat("fastcgi app ", options_.name, " copy ", copy.index, "/", copies_.size(),
                                        " could not be started: ", error));
}

void FastcgiSpawner::signal_copy(const Copy& copy, int signo) {
    if (copy.state != CopyState::Running || copy.pid <= 0) return;
    // The group, with what the copy forked; the copy alone if it has not reached setsid() yet.
    if (::kill(-copy.pid, signo) != 0) pidfd_send_signal(copy.pidfd.get(), signo);
}

void FastcgiSpawner::stop(std::function<void()> done) {
    stop_done_ = std::move(done);
    if (state_ == State::Stopping) return;  // the newest done() is called when the first stop ends
    if (state_ != State::Running) {
        state_ = State::Stopped;
        finish_stop_if_done();
        return;
    }
    state_ = State::Stopping;
    // Once the copies are gone, connecting fails at once instead of waiting in the backlog.
    listener_.reset();
    for (Copy& copy : copies_) {
        if (copy.state == CopyState::WaitingToRestart) {
            loop_.cancel(copy.restart_timer);
            copy.restart_timer = 0;
            copy.state = CopyState::Stopped;
        }
        signal_copy(copy, SIGTERM);
    }
    kill_timer_ = loop_.after(options_.kill_grace, life_.guard([this] {
        kill_timer_ = 0;
        for (const Copy& copy : copies_) {
            if (copy.state != CopyState::Running) continue;
            log::warn(label(copy), " still running ", options_.kill_grace.count(), " ms after SIGTERM: SIGKILL");
            signal_copy(copy, SIGKILL);
        }
    }));
    finish_stop_if_done();
}

void FastcgiSpawner::finish_stop_if_done() {
    if (state_ == State::Running || state_ == State::Idle || running() != 0) return;
    state_ = State::Stopped;
    if (kill_timer_ != 0) loop_.cancel(kill_timer_);
    kill_timer_ = 0;
    if (auto done = std::move(stop_done_)) {
        stop_done_ = nullptr;
        loop_.post(life_.guard(std::move(done)));
    }
}

void FastcgiSpawner::kill_and_reap_all() {
    if (kill_timer_ != 0) loop_.cancel(kill_timer_);
    kill_timer_ = 0;
    for (Copy& copy : copies_) {
        if (copy.restart_timer != 0) loop_.cancel(copy.restart_timer);
        copy.restart_timer = 0;
        if (copy.state == CopyState::Running) {
            signal_copy(copy, SIGKILL);
            loop_.unwatch(copy.pidfd.get());
            // Blocking, but bounded: a SIGKILLed process exits at once. ECHILD:
            // another waitpid took it already.
            siginfo_t info{};
            while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(copy.pidfd.get()), &info, WEXITED) < 0 &&
                   errno == EINTR) {
            }
            copy.pidfd.reset();
            copy.exec_report.reset();
            child_claims::release(copy.pid);
            copy.pid = -1;
        }
        copy.state = CopyState::Stopped;
    }
    state_ = State::Stopped;
}

}  // namespace m2b
