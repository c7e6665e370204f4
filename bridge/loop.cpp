#include "bridge/loop.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace m2b {

Loop::Loop() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + strerror(errno));
}

Loop::~Loop() {
    if (signal_fd_ >= 0) close(signal_fd_);
    close(epoll_fd_);
}

void Loop::watch(int fd, uint32_t events, FdCallback callback) {
    auto w = std::make_shared<Watch>();
    w->callback = std::move(callback);
    w->events = events;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    bool existed = watches_.count(fd) > 0;
    if (epoll_ctl(epoll_fd_, existed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)
        throw std::runtime_error(std::string("epoll_ctl: ") + strerror(errno));
    watches_[fd] = std::move(w);
}

void Loop::set_events(int fd, uint32_t events) {
    auto it = watches_.find(fd);
    if (it == watches_.end() || it->second->events == events) return;
    it->second->events = events;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void Loop::unwatch(int fd) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    it->second->callback = nullptr;  // a pending event for it in this turn is skipped
    watches_.erase(it);
}

Loop::TimerId Loop::after(std::chrono::milliseconds delay, std::function<void()> callback) {
    TimerId id = next_timer_id_++;
    auto it = timer_order_.emplace(now() + delay, id);
    timers_.emplace(id, std::make_pair(it, std::move(callback)));
    return id;
}

void Loop::cancel(TimerId id) {
    auto it = timers_.find(id);
    if (it == timers_.end()) return;
    timer_order_.erase(it->second.first);
    timers_.erase(it);
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
    if (fresh) watch(signal_fd_, EPOLLIN, [this](uint32_t) { read_signals(); });
}

void Loop::read_signals() {
    signalfd_siginfo info;
    while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        auto it = signal_handlers_.find(static_cast<int>(info.ssi_signo));
        if (it != signal_handlers_.end() && it->second) it->second();
    }
}

int Loop::next_timeout_ms() const {
    if (!posted_.empty()) return 0;
    if (timer_order_.empty()) return 1000;
    auto delta = std::chrono::duration_cast<std::chrono::milliseconds>(timer_order_.begin()->first - now()).count();
    if (delta <= 0) return 0;
    return static_cast<int>(std::min<long>(delta + 1, 1000));  // +1: never wake just before the deadline
}

void Loop::run_timers() {
    auto t = now();
    // Only timers due now; a timer added by a callback waits for the next turn.
    std::vector<TimerId> due;
    for (auto it = timer_order_.begin(); it != timer_order_.end() && it->first <= t; ++it) due.push_back(it->second);
    for (TimerId id : due) {
        auto it = timers_.find(id);
        if (it == timers_.end()) continue;
        auto callback = std::move(it->second.second);
        timer_order_.erase(it->second.first);
        timers_.erase(it);
        callback();
    }
}

void Loop::run() {
    running_ = true;
    epoll_event events[256];
    while (running_) {
        int n = epoll_wait(epoll_fd_, events, 256, next_timeout_ms());
        if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + strerror(errno));
        for (int i = 0; i < n; ++i) {
            auto it = watches_.find(events[i].data.fd);
            if (it == watches_.end()) continue;
            auto w = it->second;  // keeps the watch alive if its callback unwatches it
            if (w->callback) w->callback(events[i].events);
        }
        run_timers();
        // Tasks posted while running posted tasks wait for the next turn.
        auto tasks = std::move(posted_);
        posted_.clear();
        for (auto& task : tasks) task();
    }
}

void Loop::run_posted() {
    while (!posted_.empty()) {
        auto tasks = std::move(posted_);
        posted_.clear();
        for (auto& task : tasks) task();
    }
}

}  // namespace m2b
