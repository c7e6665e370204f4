#include "base/loop.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace m2b {

namespace {

// epoll_data carries the fd and the generation of its watch, so an event
// fetched for a descriptor that was closed and reused (and watched again)
// within the same turn is recognised as stale and dropped.
uint64_t event_key(uint32_t generation, int fd) {
    return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd);
}

// std::push_heap and friends build a max-heap: "later" puts the earliest on top.
struct Later {
    template <class Entry>
    bool operator()(const Entry& a, const Entry& b) const {
        return a.when != b.when ? a.when > b.when : a.sequence > b.sequence;
    }
};

constexpr size_t kStaleTimersAllowed = 64;  // below this, a rebuild is not worth it

}  // namespace

Loop::Loop() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + strerror(errno));
}

Loop::~Loop() {
    if (signal_fd_ >= 0) close(signal_fd_);
    close(epoll_fd_);
}

// Invariant: a watch is registered with epoll exactly when its mask is non-zero.
bool Loop::watch(int fd, uint32_t events, FdCallback callback) {
    auto it = watches_.find(fd);
    bool registered = it != watches_.end() && it->second->events != 0;
    uint32_t generation = next_generation_++;
    if (events != 0) {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = event_key(generation, fd);
        int rc = epoll_ctl(epoll_fd_, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
        // The old descriptor was closed without unwatch(), so epoll forgot it.
        if (rc != 0 && registered && errno == ENOENT) rc = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
        if (rc != 0) return false;  // errno says why; the old watch, if any, stays
    } else if (registered) {
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    }
    auto w = std::make_shared<Watch>();
    w->callback = std::move(callback);
    w->events = events;
    w->generation = generation;
    watches_[fd] = std::move(w);
    return true;
}

bool Loop::set_events(int fd, uint32_t events) {
    auto it = watches_.find(fd);
    if (it == watches_.end() || it->second->events == events) return true;
    Watch& w = *it->second;
    if (events == 0) {
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    } else {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = event_key(w.generation, fd);
        if (epoll_ctl(epoll_fd_, w.events != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) return false;
    }
    w.events = events;
    return true;
}

bool Loop::rebind(int fd, FdCallback callback) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return false;
    // A fresh Watch: the old owner's callback, if it is running, stays alive until it returns.
    auto w = std::make_shared<Watch>(*it->second);
    w->callback = std::move(callback);
    it->second = std::move(w);
    return true;
}

void Loop::unwatch(int fd) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;
    if (it->second->events != 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    watches_.erase(it);  // a pending event for it in this turn finds no watch and is skipped
}

Loop::TimerId Loop::after(std::chrono::milliseconds delay, std::function<void()> callback) {
    uint32_t slot;
    if (!free_timer_slots_.empty()) {
        slot = free_timer_slots_.back();
        free_timer_slots_.pop_back();
    } else {
        slot = static_cast<uint32_t>(timer_slots_.size());
        timer_slots_.emplace_back();
    }
    TimerSlot& s = timer_slots_[slot];
    // An id is never 0. After 2^32 reuses of one slot an id repeats: a caller that kept a
    // fired id that long could cancel another timer; the heap checks the 64-bit sequence.
    if (++s.generation == 0) s.generation = 1;
    s.callback = std::move(callback);
    s.sequence = next_timer_sequence_++;
    s.armed = true;
    ++armed_timers_;
    TimerId id = (static_cast<uint64_t>(s.generation) << 32) | slot;
    timer_heap_.push_back(TimerEntry{now() + delay, s.sequence, id});
    std::push_heap(timer_heap_.begin(), timer_heap_.end(), Later{});
    return id;
}

bool Loop::armed(TimerId id) const {
    auto slot = static_cast<uint32_t>(id);
    return slot < timer_slots_.size() && timer_slots_[slot].armed && timer_slots_[slot].generation == id >> 32;
}

bool Loop::current(const TimerEntry& entry) const {
    return armed(entry.id) && timer_slots_[static_cast<uint32_t>(entry.id)].sequence == entry.sequence;
}

void Loop::release_slot(uint32_t slot) {
    // The callback's captures die last, once the slot and the free list are consistent:
    // a destructor that sets a timer may grow timer_slots_.
    auto dying = std::move(timer_slots_[slot].callback);
    timer_slots_[slot].callback = nullptr;
    timer_slots_[slot].armed = false;
    free_timer_slots_.push_back(slot);
    --armed_timers_;
}

void Loop::cancel(TimerId id) {
    if (!armed(id)) return;
    release_slot(static_cast<uint32_t>(id));
    drop_stale_timers();
}

void Loop::drop_stale_timers() {
    if (timer_heap_.size() <= kStaleTimersAllowed + 2 * armed_timers_) return;
    std::erase_if(timer_heap_, [this](const TimerEntry& e) { return !current(e); });
    std::make_heap(timer_heap_.begin(), timer_heap_.end(), Later{});
}

void Loop::post(std::function<void()> task) { posted_.push_back(std::move(task)); }

void Loop::on_signal(int signo, std::function<void()> callback) {
    signal_handlers_[signo] = std::move(callback);
    sigset_t mask;
    sigemptyset(&mask);
    for (auto& [s, cb] : signal_handlers_) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    bool fresh = signal_fd_ < 0;
    signal_fd_ = signalfd(signal_fd_, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) throw std::runtime_error(std::string("signalfd: ") + strerror(errno));
    // Only at start-up: failing here stops the daemon before it serves anything.
    if (fresh && !watch(signal_fd_, EPOLLIN, [this](uint32_t) { read_signals(); }))
        throw std::runtime_error(std::string("epoll_ctl(signalfd): ") + strerror(errno));
}

void Loop::read_signals() {
    signalfd_siginfo info;
    while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        auto it = signal_handlers_.find(static_cast<int>(info.ssi_signo));
        if (it != signal_handlers_.end() && it->second) it->second();
    }
}

int Loop::next_timeout_ms(int limit) {
    if (!posted_.empty()) return 0;
    while (!timer_heap_.empty() && !current(timer_heap_.front())) {
        std::pop_heap(timer_heap_.begin(), timer_heap_.end(), Later{});
        timer_heap_.pop_back();
    }
    if (timer_heap_.empty()) return limit;
    auto delta = std::chrono::duration_cast<std::chrono::milliseconds>(timer_heap_.front().when - now()).count();
    if (delta <= 0) return 0;
    return static_cast<int>(std::min<long>(delta + 1, limit));  // +1: never wake just before the deadline
}

void Loop::run_timers() {
    auto t = now();
    // Only timers due now; a timer added by a callback waits for the next turn.
    std::vector<TimerId> due;
    due.swap(due_timers_);  // the member's capacity, and a callback that turns the loop has its own
    due.clear();
    while (!timer_heap_.empty() && timer_heap_.front().when <= t) {
        std::pop_heap(timer_heap_.begin(), timer_heap_.end(), Later{});
        if (current(timer_heap_.back())) due.push_back(timer_heap_.back().id);
        timer_heap_.pop_back();
    }
    // A callback may cancel a timer due in the same turn: each is checked as it comes.
    for (TimerId id : due) {
        if (!armed(id)) continue;
        auto slot = static_cast<uint32_t>(id);
        auto callback = std::move(timer_slots_[slot].callback);
        release_slot(slot);
        callback();
    }
    due_timers_.swap(due);
}

void Loop::dispatch(uint64_t key, uint32_t events) {
    int fd = static_cast<int>(static_cast<uint32_t>(key));
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;  // unwatched earlier in this turn
    auto w = it->second;                // keeps the watch alive if its callback unwatches it
    // A different watch now (the fd was closed and reused), or paused earlier in this turn.
    if (w->generation != static_cast<uint32_t>(key >> 32) || w->events == 0 || !w->callback) return;
    w->callback(events);
}

void Loop::run_once(int timeout_ms) {
    epoll_event events[256];
    int n = epoll_wait(epoll_fd_, events, 256, next_timeout_ms(std::max(timeout_ms, 0)));
    if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + strerror(errno));
    for (int i = 0; i < n; ++i) dispatch(events[i].data.u64, events[i].events);
    run_timers();
    // Tasks posted while running posted tasks wait for the next turn.
    auto tasks = std::move(posted_);
    posted_ = std::move(spare_posted_);  // an empty vector that keeps its capacity
    posted_.clear();
    for (auto& task : tasks) task();
    tasks.clear();
    spare_posted_ = std::move(tasks);
}

void Loop::run() {
    running_ = true;
    while (running_) run_once(1000);
}

void Loop::run_posted() {
    while (!posted_.empty()) {
        auto tasks = std::move(posted_);
        posted_.clear();
        for (auto& task : tasks) task();
    }
}

}  // namespace m2b
