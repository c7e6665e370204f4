// The one event loop of the process: epoll for descriptors (sockets, pipes,
// signalfd), timers, and deferred tasks.
// Kept small on purpose, in the spirit of Redis's ae.c.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>
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

    // Adds or replaces the watch on `fd` (EPOLLIN / EPOLLOUT / ...). False with
    // errno set when epoll refuses it (ENOMEM, ENOSPC at max_user_watches, EPERM
    // for a regular file): the caller fails its one request, the daemon lives on.
    [[nodiscard]] bool watch(int fd, uint32_t events, FdCallback callback);
    // A mask of 0 takes the fd out of epoll (EPOLLHUP and EPOLLERR cannot be
    // masked and would wake every turn) but keeps the watch; a non-zero mask
    // puts it back. False with errno set if epoll refuses.
    bool set_events(int fd, uint32_t events);
    // Hands the watch on `fd` to a new callback, mask and epoll entry unchanged
    // (no system call): for a connection passed from one owner to the next.
    // False if `fd` is not watched.
    bool rebind(int fd, FdCallback callback);
    // Safe to call from inside any callback, for any fd.
    void unwatch(int fd);

    // Never returns 0, so callers may keep 0 for "no timer". Timers due at the
    // same time fire in the order they were set.
    TimerId after(std::chrono::milliseconds delay, std::function<void()> callback);
    void cancel(TimerId id);  // unknown or fired ids are ignored
    size_t timers() const { return armed_timers_; }  // set and not yet fired or cancelled
    size_t timer_entries() const { return timer_heap_.size(); }  // the heap, stale entries included

    // Runs `task` on the next turn of the loop: for work that must not happen
    // inside the current callback (destroying the object that called it).
    void post(std::function<void()> task);

    // Destroys `owner` (a unique_ptr or shared_ptr) on the next turn: for an
    // object whose callback is still on the stack.
    template <typename Ptr>
    void dispose_later(Ptr owner) {
        if (!owner) return;
        // std::function needs a copyable callable: a unique_ptr becomes a shared_ptr.
        post([dead = std::shared_ptr<typename Ptr::element_type>(std::move(owner))] {});
    }

    // Delivers these signals through the loop instead of asynchronously.
    void on_signal(int signo, std::function<void()> callback);

    void run();  // until stop()
    // One turn: waits up to `timeout_ms` (less if a timer or task is due), runs
    // the ready callbacks, the due timers and the posted tasks.
    void run_once(int timeout_ms);
    void stop() { running_ = false; }
    // Runs what is still posted (deferred destructions) while their owners are alive.
    void run_posted();

    static Clock::time_point now() { return Clock::now(); }

private:
    struct Watch {
        FdCallback callback;
        uint32_t events = 0;
        uint32_t generation = 0;  // in epoll_data next to the fd
        bool in_epoll = false;
    };
    void dispatch(uint64_t data, uint32_t events);
    // Timers: a min-heap of deadlines in a vector, and callbacks in slots reused
    // through a free list, so a request's timers allocate nothing once the loop is
    // warm. A cancelled timer's heap entry stays, and is skipped when it comes up
    // (its slot has moved on to a later timer); the heap is rebuilt when such entries
    // outnumber the live ones, so a long deadline cancelled at once costs no memory.
    struct TimerSlot {
        std::function<void()> callback;
        uint64_t sequence = 0;  // of the timer set in it last: what a heap entry is checked against
        uint32_t generation = 0;
        bool armed = false;
    };
    struct TimerEntry {
        Clock::time_point when;
        uint64_t sequence;  // ties: first set, first fired
        TimerId id;         // generation << 32 | slot
    };
    bool armed(TimerId id) const;
    bool current(const TimerEntry& entry) const;  // armed, and not an older timer of the same slot
    void release_slot(uint32_t slot);
    void drop_stale_timers();
    void run_timers();
    void read_signals();
    int next_timeout_ms(int limit);

    int epoll_fd_ = -1;
    int signal_fd_ = -1;
    bool running_ = false;
    std::unordered_map<int, std::shared_ptr<Watch>> watches_;
    uint32_t next_generation_ = 1;
    std::vector<TimerEntry> timer_heap_;
    std::vector<TimerSlot> timer_slots_;
    std::vector<uint32_t> free_timer_slots_;
    std::vector<TimerId> due_timers_;  // run_timers' list, kept for its capacity
    size_t armed_timers_ = 0;
    uint64_t next_timer_sequence_ = 0;
    std::vector<std::function<void()>> posted_;
    std::vector<std::function<void()>> spare_posted_;  // the last turn's, for its capacity
    std::unordered_map<int, std::function<void()>> signal_handlers_;
};

}  // namespace m2b
