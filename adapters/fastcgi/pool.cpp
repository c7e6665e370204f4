#include "adapters/fastcgi/pool.h"

#include <algorithm>
#include <cerrno>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

namespace m2b {

namespace {
// An idle connection reports only that the backend closed it or spoke unasked.
constexpr uint32_t kIdleEvents = EPOLLIN | EPOLLRDHUP;
}  // namespace

KeptConnections::KeptConnections(Loop& loop, Options options, Connect connect)
    : loop_(loop), options_(std::move(options)), connect_(std::move(connect)),
      width_(std::max<size_t>(1, options_.limit)), last_width_change_(Loop::now()) {}

KeptConnections::~KeptConnections() {
    if (unread_timer_) loop_.cancel(unread_timer_);
    if (probe_timer_) loop_.cancel(probe_timer_);
    if (idle_timer_) loop_.cancel(idle_timer_);
    for (const Idle& idle : idle_) {
        loop_.unwatch(idle.fd);
        ::close(idle.fd);
    }
}

int KeptConnections::acquire(Waiter& who, bool fresh_only, bool& reused, int& error) {
    error = 0;
    reused = false;
    // Those already waiting go first.
    if (waiting_.empty()) {
        int fd = grant(fresh_only, reused, error);
        if (fd != -2) return fd;
    }
    waiting_.push_back({&who, fresh_only});
    return -1;
}

int KeptConnections::grant(bool fresh_only, bool& reused, int& error) {
    reused = false;
    if (!idle_.empty()) {
        if (!fresh_only) {
            reused = true;
            return take_idle();
        }
        close_fd(take_idle());  // its place goes to a fresh connection
        return open_fresh(error);
    }
    if (open_ < width_) return open_fresh(error);
    // All the backend is taken to serve is busy. Now and then one more, in
    // case it has grown (php-fpm's dynamic pools do); if it is not read, the
    // width comes back down.
    if (probe_due()) {
        ++width_;
        last_width_change_ = Loop::now();
        log::debug("backend ", options_.address, ": trying ", width_, " connections at once");
        return open_fresh(error);
    }
    return -2;
}

bool KeptConnections::probe_due() const {
    return options_.learn && width_ < options_.limit && Loop::now() - last_width_change_ >= options_.probe_every;
}

void KeptConnections::forget(Waiter& who) {
    auto w = std::find_if(waiting_.begin(), waiting_.end(), [&](const Queued& q) { return q.who == &who; });
    if (w != waiting_.end()) waiting_.erase(w);
    read_by_backend(who);
}

int KeptConnections::unread_bytes(int fd) {
    int queued = 0;
    return ioctl(fd, SIOCOUTQ, &queued) == 0 ? queued : -1;
}

void KeptConnections::written(Waiter& who, int fd) {
    if (!options_.learn) return;
    int queued = unread_bytes(fd);
    if (queued <= 0) return;  // taken already
    unread_.push_back({&who, fd, queued, Loop::now(), answered_});
    if (!unread_timer_) unread_timer_ = loop_.after(options_.unread_after, [this] { check_unread(); });
}

void KeptConnections::read_by_backend(Waiter& who) {
    std::erase_if(unread_, [&](const Unread& u) { return u.who == &who; });
}

void KeptConnections::release(int fd) {
    ++answered_;
    if (open_ > width_) {
        discard(fd);
        return;
    }
    watch_idle(fd);
    if (!waiting_.empty()) post_serve();
}

void KeptConnections::discard(int fd) {
    close_fd(fd);
    if (!waiting_.empty()) post_serve();
}

void KeptConnections::close_fd(int fd) {
    auto it = std::find(idle_.begin(), idle_.end(), fd);
    if (it != idle_.end()) idle_.erase(it);
    loop_.unwatch(fd);
    ::close(fd);
    --open_;
}

// Idle connections stay in epoll, so handing one to a request costs no epoll_ctl.
void KeptConnections::watch_idle(int fd) {
    auto on_idle_event = [this, fd](uint32_t) { close_fd(fd); };
    if (!loop_.rebind(fd, on_idle_event) && !loop_.watch(fd, kIdleEvents, on_idle_event)) {
        close_fd(fd);
        return;
    }
    if (!loop_.set_events(fd, kIdleEvents)) {
        close_fd(fd);
        return;
    }
    idle_.push_back({fd, Loop::now()});
    if (!idle_timer_) idle_timer_ = loop_.after(options_.idle_timeout, [this] { close_expired(); });
}

// The longest idle are at the front.
void KeptConnections::close_expired() {
    idle_timer_ = 0;
    auto now = Loop::now();
    while (!idle_.empty() && now - idle_.front().since >= options_.idle_timeout) close_fd(idle_.front().fd);
    if (!idle_.empty()) {
        auto wait = idle_.front().since + options_.idle_timeout - now;
        auto ms = std::max<long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
        idle_timer_ = loop_.after(std::chrono::milliseconds(ms), [this] { close_expired(); });
    }
}

// The most recently used: the longest idle are the first the backend may close.
int KeptConnections::take_idle() {
    int fd = idle_.back().fd;
    idle_.pop_back();
    return fd;
}

int KeptConnections::open_fresh(int& error) {
    int fd = connect_(error);
    if (fd >= 0) ++open_;
    return fd;
}

void KeptConnections::post_serve() {
    if (serve_posted_) return;
    serve_posted_ = true;
    loop_.post(life_.guard([this] { serve_waiters(); }));
}

void KeptConnections::serve_waiters() {
    serve_posted_ = false;
    while (!waiting_.empty()) {
        bool reused = false;
        int error = 0;
        int fd = grant(waiting_.front().fresh_only, reused, error);
        if (fd == -2) break;  // all busy: the next release, or the probe timer, serves them
        Waiter* who = waiting_.front().who;
        waiting_.pop_front();
        who->on_connection(fd, reused, error);
    }
    // Under a queue that never empties, releases alone would never try a wider width.
    if (!waiting_.empty() && options_.learn && width_ < options_.limit && !probe_timer_) {
        auto wait = options_.probe_every - (Loop::now() - last_width_change_);
        auto ms = std::max<long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
        probe_timer_ = loop_.after(std::chrono::milliseconds(ms), [this] {
            probe_timer_ = 0;
            serve_waiters();
        });
    }
}

void KeptConnections::check_unread() {
    unread_timer_ = 0;
    auto now = Loop::now();
    size_t stuck = 0, newly_stuck = 0;
    std::erase_if(unread_, [&](Unread& u) {
        if (now - u.since < options_.unread_after) return false;
        // Any byte taken: the backend has accepted the connection and is on it.
        int queued = unread_bytes(u.fd);
        if (queued < u.queued) return true;
        if (answered_ == u.answered_before) return false;  // it finished nothing else either: maybe only slow to run
        ++stuck;
        if (!u.counted) ++newly_stuck;
        u.counted = true;
        return false;
    });
    // Each unread request narrows once: later checks see connections already closed.
    if (newly_stuck) narrow(open_ > stuck ? open_ - stuck : 1, stuck);
    if (!unread_.empty()) unread_timer_ = loop_.after(options_.unread_after, [this] { check_unread(); });
}

// The backend reads `width` connections at most: keep no more than that.
// Closing idle ones frees their workers for the requests still unread.
void KeptConnections::narrow(size_t width, size_t unread) {
    if (width >= width_) return;
    std::string line = log::cat("backend ", options_.address, " leaves ", unread, " request(s) unread on ", open_,
                                " connections: keeping ", width, " connection(s) to it");
    // At info once for each new low: a probe that finds the same width again is not news.
    if (width < lowest_width_logged_) {
        log::info(line);
        lowest_width_logged_ = width;
    } else {
        log::debug(line);
    }
    width_ = width;
    last_width_change_ = Loop::now();
    while (open_ > width_ && !idle_.empty()) close_fd(idle_.front().fd);
}

}  // namespace m2b
