// Supervised FastCGI apps: m2bridge starts N copies of an unmodified FastCGI
// program (a libfcgi app, php-cgi, ...) sharing one listening unix socket on
// their fd 0 (FCGI_LISTENSOCK_FILENO), as spawn-fcgi and mod_fcgid do, restarts
// a copy that dies (with back-off) and never lets one outlive m2bridge.
//
// Call start() after any privilege drop: the socket's directory is private to
// the user m2bridge runs as at that moment, and the copies run as that user.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "base/life_token.h"
#include "base/unique_fd.h"
#include "base/loop.h"

namespace m2b {

struct SpawnOptions {
    std::vector<std::string> command;  // argv of the program; [0] looked up in PATH at start()
    size_t instances = 1;
    std::string name;  // for log lines
    std::chrono::milliseconds kill_grace{5000};  // stop(): SIGTERM, then SIGKILL after this long
    // A copy that lived this long died of something other than a broken start:
    // its restart waits the shortest back-off again.
    std::chrono::milliseconds stable_after{10000};
};

class FastcgiSpawner {
public:
    static constexpr std::chrono::milliseconds kFirstBackoff{100};
    static constexpr std::chrono::milliseconds kMaxBackoff{10000};

    FastcgiSpawner(Loop& loop, SpawnOptions options);
    // SIGKILLs and reaps any copy still running, removes the socket and its directory.
    ~FastcgiSpawner();
    FastcgiSpawner(const FastcgiSpawner&) = delete;
    FastcgiSpawner& operator=(const FastcgiSpawner&) = delete;

    // Resolves the command, makes the socket, starts the copies. "" or an error
    // naming what failed (the command, the socket path); on error nothing is left.
    std::string start();
    // "unix:/…/fcgi.sock", for the FastCGI client; "" before start().
    std::string address() const;
    // No restarts after this; SIGTERM to each copy's process group, SIGKILL
    // after kill_grace; done() (on the loop, never from inside stop()) once all
    // are reaped. Not called if the spawner is destroyed first.
    void stop(std::function<void()> done);

    uint64_t restarts() const { return restarts_; }  // copies started again after a death
    size_t running() const;                           // copies with a live (unreaped) process

private:

    // The private directory (mode 0700) with the socket in it, removed with it.
    class SocketDir {
    public:
        SocketDir() = default;
        ~SocketDir() { remove(); }
        SocketDir(const SocketDir&) = delete;
        SocketDir& operator=(const SocketDir&) = delete;
        std::string create();  // "" or the error
        void remove();
        const std::string& socket_path() const { return socket_path_; }

    private:
        std::string dir_;
        std::string socket_path_;
    };

    enum class State { Idle, Running, Stopping, Stopped };
    enum class CopyState { Running, WaitingToRestart, Stopped };

    struct Copy {
        size_t index = 0;  // 1-based, for log lines
        CopyState state = CopyState::Stopped;
        pid_t pid = -1;
        UniqueFd pidfd;          // readable once the process has exited
        UniqueFd exec_report;    // the errno of a failed execve, or EOF once execve succeeded
        Loop::Clock::time_point started{};
        std::chrono::milliseconds backoff = kFirstBackoff;  // the wait before its next restart
        Loop::TimerId restart_timer = 0;
    };

    std::string launch(Copy& copy);  // "" or why no process could be started
    void on_exit(size_t slot);
    void restart(size_t slot);
    void schedule_restart(Copy& copy, const std::string& why);
    void signal_copy(const Copy& copy, int signo);
    void finish_stop_if_done();
    void kill_and_reap_all();
    std::string label(const Copy& copy) const;

    Loop& loop_;
    SpawnOptions options_;
    State state_ = State::Idle;
    std::string program_;  // the resolved path of command[0]
    // Built before any fork: the child may only make system calls.
    std::vector<std::string> argv_strings_, env_strings_;
    std::vector<char*> argv_, envp_;
    SocketDir socket_dir_;
    UniqueFd listener_;
    std::vector<Copy> copies_;
    uint64_t restarts_ = 0;
    Loop::TimerId kill_timer_ = 0;
    std::function<void()> stop_done_;
    LifeToken life_;  // posted callbacks do nothing once the spawner is gone
};

}  // namespace m2b
