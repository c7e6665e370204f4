#include "adapters/cgi/runner.h"

#include "adapters/byte_pump.h"
#include "adapters/child_claims.h"
#include "adapters/failure_report.h"
#include "adapters/request_body.h"
#include "base/exec_child.h"
#include "base/log.h"
#include "base/unique_fd.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/sched.h>  // clone_args, CLONE_INTO_CGROUP
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

namespace m2b {

namespace {

struct Pipe {
    int ours = -1;    // non-blocking, close-on-exec
    int theirs = -1;  // becomes 0, 1 or 2 in the child
};

bool make_pipe(Pipe& p, bool we_write) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    p.ours = we_write ? fds[1] : fds[0];
    p.theirs = we_write ? fds[0] : fds[1];
    // A new pipe has no other status flags: one F_SETFL, no F_GETFL (a system call per pipe less).
    fcntl(p.ours, F_SETFL, O_NONBLOCK);
    return true;
}

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

// What a script starts with: the program, argv, environment, working
// directory, and the pipe ends that become its 0, 1 and 2. In a process group
// (a session) of its own, the signal mask empty and every signal at its
// default (m2bridge ignores SIGPIPE; scripts must not), nothing else open.
struct Launch {
    const char* path;
    char* const* argv;
    char* const* envp;
    const char* dir;
    int stdio[3];
    const SignalsToReset* signals;  // those not at SIG_DFL in m2bridge
};

// posix_spawn: glibc uses clone(CLONE_VM|CLONE_VFORK), no copy of the daemon.
// Returns 0 or an errno.
int spawn(const Launch& l, pid_t& pid) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    for (int i = 0; i < 3; ++i) posix_spawn_file_actions_adddup2(&actions, l.stdio[i], i);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    posix_spawn_file_actions_addchdir_np(&actions, l.dir);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, reset;
    sigemptyset(&none);
    sigemptyset(&reset);
    for (int i = 0; i < l.signals->count; ++i) sigaddset(&reset, l.signals->signals[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &reset);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(&pid, l.path, &actions, &attr, l.argv, l.envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

// The child's side of clone_into: it shares or copies the memory of a process
// with other threads (ZeroMQ's), so only system calls until execve, no
// allocation. Returns the errno when it fails. Not instrumented: it runs on a
// stack of its own, which AddressSanitizer would take for a stack overflow.
__attribute__((no_sanitize("address"))) int exec_in_child(const Launch& l) {
    if (setsid() < 0) return errno;
    reset_signals_for_exec(*l.signals);
    for (int i = 0; i < 3; ++i) {
        if (l.stdio[i] == i) fcntl(i, F_SETFD, 0);  // already in place: keep it open across exec
        else if (dup2(l.stdio[i], i) < 0) return errno;
    }
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);  // closed by execve: the report pipe stays until then
    if (chdir(l.dir) != 0) return errno;
    execve(l.path, l.argv, l.envp);
    return errno;
}

struct ChildStart {
    const Launch* launch;
    int report;  // the write end of the pipe that carries a failed execve's errno; -1: `error`
    int error;   // a failed execve's errno, written here when the child shares our memory
};

__attribute__((no_sanitize("address"))) int child_main(void* arg) {
    auto* start = static_cast<ChildStart*>(arg);
    int error = exec_in_child(*start->launch);
    if (start->report >= 0)
        (void)!::write(start->report, &error, sizeof error);
    else
        start->error = error;  // read by the parent once CLONE_VFORK lets it go on
    return 127;
}

#if defined(__x86_64__)
// clone3 with CLONE_VM, as posix_spawn does with clone: the child borrows the
// parent's memory (the parent waits, CLONE_VFORK) instead of a copy of its
// page tables, which cost some 0.6 ms of m2bridge's CPU per script. With
// CLONE_VM the child needs a stack of its own, and the system call returns
// there, so it is made here and not through syscall(): the child calls
// child_main on its stack and exits, never returning into this frame.
long clone3_shared_memory(clone_args* args, int (*fn)(void*), void* arg) {
    long ret;
    asm volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %[arg], %%rdi\n\t"
        "call *%[fn]\n\t"
        "mov %%eax, %%edi\n\t"
        "mov %[exit], %%eax\n\t"
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(ret)
        : "a"(SYS_clone3), "D"(args), "S"(sizeof *args), [fn] "r"(fn), [arg] "r"(arg), [exit] "i"(SYS_exit)
        : "rcx", "r11", "memory");
    return ret;
}
constexpr bool kSharedMemoryClone = true;
#else
long clone3_shared_memory(clone_args*, int (*)(void*), void*) { return -ENOSYS; }
constexpr bool kSharedMemoryClone = false;
#endif

// The child's stack: CLONE_VFORK keeps the parent waiting until execve, so one
// is enough for every script, one at a time.
constexpr size_t kChildStack = 64 * 1024;
alignas(64) char child_stack[kChildStack];

// Starts the script inside `cgroup` from its first instruction: a child it
// forks at once is in the cgroup too. (posix_spawn and then moving the pid
// lets such a child escape, and the move blocks for milliseconds.)
// CLONE_VFORK returns once execve has happened or failed. Returns 0 or an errno.
// `cgroup_dir` is the cgroup's directory, open (ScriptCgroups keeps it).
int clone_into(int cgroup_dir, const Launch& l, pid_t& pid) {
    clone_args args{};
    args.flags = CLONE_VFORK | CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<uint64_t>(cgroup_dir);
    ChildStart start{&l, -1, 0};
    long child;
    int error = 0;
    if (kSharedMemoryClone) {
        // The child writes a failed execve's errno into `start` itself, as posix_spawn does:
        // no pipe to make, read and close for every script.
        args.flags |= CLONE_VM;
        args.stack = reinterpret_cast<uint64_t>(child_stack);
        args.stack_size = sizeof child_stack;
        child = clone3_shared_memory(&args, child_main, &start);
        if (child < 0) error = static_cast<int>(-child);
        else error = start.error;
    } else {
        int report[2];  // the child's errno if execve fails; closed by a successful one
        if (pipe2(report, O_CLOEXEC) != 0) return errno;
        start.report = report[1];
        child = syscall(SYS_clone3, &args, sizeof args);
        if (child == 0) _exit(child_main(&start));
        if (child < 0) error = errno;
        ::close(report[1]);
        if (child > 0 && ::read(report[0], &error, sizeof error) != static_cast<ssize_t>(sizeof error)) error = 0;
        ::close(report[0]);
    }
    if (error == 0) pid = static_cast<pid_t>(child);
    return error;  // a child that failed is reaped with the others
}

// A script that has exited, its SIGCHLD not handled yet: the usual case when
// its response ends with the EOF of its exit. Nothing to kill then, and its
// cgroup stays reusable (a kill keeps it from reuse: a new one is made, which
// costs the kernel milliseconds).
bool exited_unreaped(pid_t pid) {
    siginfo_t info{};
    return waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

// A script on the byte pump (byte_pump.h): the body to its stdin, the
// response from its stdout, its stderr to the log. What is CGI's own is the
// process: its start, its exit, and the end of the response that the exit
// marks.
class CgiExchange final : public Exchange, private BytePump::Protocol {
public:
    CgiExchange(CgiGateway& gateway, const CgiEnv& env, const BodySource& body, ExchangeSink& sink)
        : gateway_(gateway), loop_(gateway.loop()), env_(env), sink_(sink), body_reader_(body, 256 * 1024),
          pump_(loop_, *this, gateway.options().timeout) {}

    ~CgiExchange() override {
        pump_.stop();
        if (pid_ > 0) {
            gateway_.forget(pid_);
            // Ended at the EOF of its stdout and exited: as after an exit seen first (end_after_exit).
            bool ended_by_exit = stdout_closed_ && exited_unreaped(pid_);
            if (!exited_ && !ended_by_exit) gateway_.kill_group(pid_, cgroup_);
        }
        gateway_.cgroups().release(cgroup_);
    }

    void begin() {
        start_script();
        starting_ = false;
    }

    void set_paused(bool paused) override {
        if (stage_ != Stage::Running || pump_.paused() == paused) return;
        pump_.set_paused(paused);
        // After the exit no wake-up may come (the pipe can be empty but held open).
        if (!paused && exited_) loop_.post(life_.guard([this] { pump_.read_now(); }));
    }

    void cancel() override {
        stage_ = Stage::Done;
        pump_.stop();
    }

private:
    enum class Stage {
        Running,    // the pump runs (the script may have exited: its output is still read)
        Reporting,  // failed; the sink hears of it on the next turn
        Done,       // ended: complete, failed or cancelled
    };

    void start_script() {
        std::string script;
        for (const auto& [name, value] : env_)
            if (name == "SCRIPT_FILENAME") script = value;
        if (script.empty()) {
            fail(BackendFailure::Unavailable, "no SCRIPT_FILENAME to run");
            return;
        }
        Pipe in, out, err;
        auto close_theirs = [&] {
            for (Pipe* p : {&in, &out, &err}) close_fd(p->theirs);
        };
        // A bodiless request's script reads /dev/null (the gateway's, open once): the EOF a
        // closed pipe would give, without a pipe to make and close for every GET.
        int script_stdin = body_reader_.size() == 0 ? gateway_.null_input() : -1;
        if ((script_stdin < 0 && !make_pipe(in, true)) || !make_pipe(out, false) || !make_pipe(err, false)) {
            int e = errno;
            close_theirs();
            for (Pipe* p : {&in, &out, &err}) close_fd(p->ours);
            fail(BackendFailure::Overloaded, std::string("pipe: ") + strerror(e));
            return;
        }
        // Watched before the spawn: if epoll refuses (no memory, max_user_watches),
        // no process has started and this one request fails. A bodiless
        // request's stdin is closed here already.
        if (!pump_.start_pipes(UniqueFd(in.ours), UniqueFd(out.ours), UniqueFd(err.ours))) {
            int e = errno;
            close_theirs();
            fail(BackendFailure::Overloaded, std::string("cannot watch descriptor: ") + strerror(e));
            return;
        }
        if (stage_ != Stage::Running) {  // the body failed already (a short upload file)
            close_theirs();
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

        if (script_stdin < 0) script_stdin = in.theirs;
        Launch launch{script.c_str(), argv.data(), envp.data(), dir.c_str(), {script_stdin, out.theirs, err.theirs},
                      &gateway_.signals_to_reset()};
        cgroup_ = gateway_.cgroups().create();
        pid_t pid = -1;
        int rc = 0;
        if (cgroup_.empty()) {
            rc = spawn(launch, pid);
        } else {
            int cgroup_dir = gateway_.cgroups().directory(cgroup_);
            rc = cgroup_dir < 0 ? errno : clone_into(cgroup_dir, launch, pid);
        }
        close_theirs();
        if (rc != 0) {
            BackendFailure kind = rc == EAGAIN ? BackendFailure::Overloaded : BackendFailure::Unavailable;
            fail(kind, "cannot run " + script + ": " + strerror(rc));
            return;
        }
        pid_ = pid;
        gateway_.on_exit(pid_, life_.guard([this](int status) { on_child_exit(status); }));
        pump_.start_timer();
    }

    // The body, exactly CONTENT_LENGTH bytes; the pump then closes stdin (EOF).
    std::string_view unsent() override {
        std::string_view bytes = body_reader_.pending();
        if (bytes.empty() && body_reader_.state() == RequestBodyReader::State::ShortFile)
            fail(BackendFailure::Unavailable, "upload file shorter than its size");
        return bytes;
    }

    void sent(size_t n) override { body_reader_.consume(n); }

    // Response bytes. After the script's exit, only the `stdout_left_` bytes
    // that were in the pipe at that moment still belong to the response.
    std::span<char> read_space() override {
        if (exited_ && stdout_left_ == 0) {
            end_after_exit();
            return {};
        }
        std::span<char> space = BytePump::scratch();
        return exited_ ? space.first(std::min(space.size(), stdout_left_)) : space;
    }

    void received(size_t n) override {
        if (exited_) stdout_left_ -= n;
        pump_.progress();  // only response bytes count as the script's progress
        sink_.on_stdout(std::string_view(BytePump::scratch().data(), n));
        // That may have been the last byte: end now, no wake-up may come.
        if (stage_ == Stage::Running && !pump_.paused() && exited_ && stdout_left_ == 0) end_after_exit();
    }

    void read_ended(int error) override {  // end of response = EOF on stdout
        stdout_closed_ = error == 0;
        complete();
    }

    // Logged only: a script that talks to stderr is not making progress.
    void diagnostics(std::string_view bytes) override { sink_.on_stderr(bytes); }

    void connect_failed(int error) override {  // pipes do not connect
        fail(BackendFailure::Unavailable, std::string("connect: ") + strerror(error));
    }

    void silent(bool /*connecting*/) override {
        fail(BackendFailure::Timeout, "script silent for " + std::to_string(pump_.timeout().count()) + " ms");
    }

    void watch_failed(int error) override {
        fail_later(BackendFailure::Overloaded, std::string("cannot watch descriptor: ") + strerror(error));
    }

    // The script has exited: what it wrote is what is in the pipe now. That
    // much more is read (bounded per wake-up, paused like any output); then
    // the response ends, even if a background child still holds stdout open
    // and keeps writing.
    void on_child_exit(int status) {
        exited_ = true;
        exit_status_ = status;
        gateway_.forget(pid_);
        if (stage_ != Stage::Running) return;
        int pending = 0;
        if (ioctl(pump_.response_fd(), FIONREAD, &pending) != 0) pending = 0;
        stdout_left_ = static_cast<size_t>(std::max(pending, 0));
        pump_.read_now();
    }

    void end_after_exit() {
        // EOF: nobody else holds stdout. Otherwise a background process does;
        // its output is not the script's, and its group is killed.
        char probe;
        if (::read(pump_.response_fd(), &probe, 1) != 0) gateway_.kill_group(pid_, cgroup_);
        complete();
    }

    void complete() {
        if (stage_ != Stage::Running) return;
        stage_ = Stage::Done;
        pump_.stop();
        sink_.on_complete();
    }

    void fail(BackendFailure kind, const std::string& why) {
        if (starting_) {  // inside Gateway::start: the caller does not hold the handle yet
            fail_later(kind, why);
            return;
        }
        if (stage_ != Stage::Running) return;
        stage_ = Stage::Done;
        stop_script();
        sink_.on_failure(kind, why);
    }

    // Ends now, reports on the next turn: while starting, or inside a sink callback.
    void fail_later(BackendFailure kind, std::string why) {
        if (stage_ != Stage::Running) return;
        report_failure_next_turn(loop_, life_, stage_, sink_, kind, std::move(why), [this] { stop_script(); });
    }

    void stop_script() {
        pump_.stop();
        if (pid_ > 0 && !exited_) gateway_.kill_group(pid_, cgroup_);
    }

    CgiGateway& gateway_;
    Loop& loop_;
    const CgiEnv& env_;
    ExchangeSink& sink_;
    LifeToken life_;

    Stage stage_ = Stage::Running;
    bool starting_ = true;
    pid_t pid_ = -1;
    std::string cgroup_;  // "" when scripts are not confined to cgroups
    bool exited_ = false;
    int exit_status_ = 0;
    size_t stdout_left_ = 0;  // after the exit: bytes still in the pipe
    bool stdout_closed_ = false;  // the response ended at EOF: nothing holds stdout any more
    RequestBodyReader body_reader_;
    BytePump pump_;  // last: destroyed first, while what its callbacks use is alive
};

}  // namespace

namespace {

// Every CGI gateway of the process (a config may have several, a reload makes
// and drops them): SIGCHLD has one handler, which reaps for all of them.
std::vector<CgiGateway*>& live_gateways() {
    static std::vector<CgiGateway*> gateways;
    return gateways;
}

}  // namespace

CgiGateway::CgiGateway(Loop& loop, CgiOptions options)
    : loop_(loop), options_(std::move(options)), null_input_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {
    // Only the real one (character device 1:3): a file put there would feed every GET's script.
    struct stat st {};
    if (null_input_ && (fstat(null_input_.get(), &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)))
        null_input_.reset();
    // Orphaned grandchildren of scripts become ours, so they are reaped too.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    live_gateways().push_back(this);
    loop_.on_signal(SIGCHLD, [&loop] { reap_all(loop); });
    if (cgroups_.enabled())
        log::info("scripts confined to cgroup ", cgroups_.path());
    else
        log::info("scripts not confined to a cgroup: ", cgroups_.why_not(),
                  "; grandchildren that call setsid() can outlive their request");
}

CgiGateway::~CgiGateway() {
    auto& live = live_gateways();
    live.erase(std::remove(live.begin(), live.end(), this), live.end());
    // Bounded: SIGKILLed scripts exit at once.
    for (auto& [pid, cb] : children_) {
        ::kill(-pid, SIGKILL);
        while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    if (live.empty()) loop_.on_signal(SIGCHLD, nullptr);
}

void CgiGateway::on_exit(pid_t pid, std::function<void(int)> callback) { children_[pid] = std::move(callback); }

void CgiGateway::forget(pid_t pid) {
    auto it = children_.find(pid);
    if (it != children_.end()) it->second = nullptr;  // still reaped, nobody told
}

void CgiGateway::kill_group(pid_t pgid, const std::string& cgroup) {
    // Without a cgroup, a group that is gone already leaves nothing to reach.
    if (::kill(-pgid, SIGTERM) != 0 && cgroup.empty()) return;
    cgroups_.never_reuse(cgroup);  // the SIGKILL below must not reach another request's script
    loop_.after(options_.kill_grace, life_.guard([this, pgid, cgroup] {
        ::kill(-pgid, SIGKILL);
        cgroups_.kill(cgroup);  // also what left the group with setsid()
    }));
}

// Each gateway's scripts by pid; then any other waitable child: a script that
// exited meanwhile goes to its gateway, a grandchild adopted as subreaper is
// reaped here, and a child the spawner reaps through its pidfd is left to it
// (peeked with WNOWAIT), with one more pass soon for what waits behind it.
void CgiGateway::reap_all(Loop& loop) {
    auto live = live_gateways();  // a callback may destroy a gateway
    for (CgiGateway* g : live) g->reap_children();
    for (;;) {
        siginfo_t info{};
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
        pid_t pid = info.si_pid;
        if (child_claims::is_claimed(pid)) {
            loop.after(std::chrono::milliseconds(20), [&loop] {
                if (!live_gateways().empty()) reap_all(loop);
            });
            break;
        }
        auto owner = std::find_if(live.begin(), live.end(), [&](CgiGateway* g) { return g->children_.count(pid); });
        if (owner != live.end() &&
            std::find(live_gateways().begin(), live_gateways().end(), *owner) != live_gateways().end()) {
            (*owner)->reap_children();
            continue;
        }
        waitpid(pid, nullptr, WNOHANG);
    }
    for (CgiGateway* g : live_gateways()) g->cgroups_.sweep();  // a released request cgroup may be empty now
}

void CgiGateway::reap_children() {
    std::vector<std::pair<std::function<void(int)>, int>> exited;
    for (auto it = children_.begin(); it != children_.end();) {
        int status = 0;
        pid_t got = waitpid(it->first, &status, WNOHANG);
        if (got == it->first || (got < 0 && errno == ECHILD)) {  // ECHILD: reaped already; never wait for it
            exited.emplace_back(std::move(it->second), status);
            it = children_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& [callback, status] : exited)
        if (callback) callback(status);
}

std::unique_ptr<Exchange> CgiGateway::start(const CgiEnv& env, const BodySource& body, uint64_t, ExchangeSink& sink) {
    auto exchange = std::make_unique<CgiExchange>(*this, env, body, sink);
    exchange->begin();
    return exchange;
}

}  // namespace m2b
