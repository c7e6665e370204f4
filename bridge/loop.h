// The one event loop of the process: epoll for descriptors (sockets, pipes,
// ZeroMQ's notification fd, signalfd), a timer map, and deferred tasks.
// Kept small on purpose, in the spirit of Redis's ae.c.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

namespace m2b {

class Loop {
public:
    using Clock = std::chrono::steady_clock;
    using FdCallback = std::function<void(uint32_t events)>;
    using TimerId = uint64_t;

    Loop();
    ~Loop();
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    // Adds or replaces the watch on `fd` (EPOLLIN / EPOLLOUT / ...).
    void watch(int fd, uint32_t events, FdCallback callback);
    void set_events(int fd, uint32_t events);
    // Safe to call from inside any callback, for any fd.
    void unwatch(int fd);

    TimerId after(std::chrono::milliseconds delay, std::function<void()> callback);
    void cancel(TimerId id);  // unknown or fired ids are ignored

    // Runs `task` on the next turn of the loop: for work that must not happen
    // inside the current callback (destroying the object that called it).
    void post(std::function<void()> task);

    // Delivers these signals through the loop instead of asynchronously.
    void on_signal(int signo, std::function<void()> callback);

    void run();   // until stop()
    void stop() { running_ = false; }
    // Runs what is still posted (deferred destructions) while their owners are alive.
    void run_posted();

    static Clock::time_point now() { return Clock::now(); }

private:
    struct Watch {
        FdCallback callback;
        uint32_t events = 0;
    };
    void run_timers();
    void read_signals();
    int next_timeout_ms() const;

    int epoll_fd_ = -1;
    int signal_fd_ = -1;
    bool running_ = false;
    std::unordered_map<int, std::shared_ptr<Watch>> watches_;
    std::multimap<Clock::time_point, TimerId> timer_order_;
    std::unordered_map<TimerId, std::pair<std::multimap<Clock::time_point, TimerId>::iterator, std::function<void()>>> timers_;
    TimerId next_timer_id_ = 1;
    std::vector<std::function<void()>> posted_;
    std::unordered_map<int, std::function<void()>> signal_handlers_;
};

}  // namespace m2b
