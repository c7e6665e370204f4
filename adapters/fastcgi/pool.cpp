#include "adapters/fastcgi/pool.h"

#include <algorithm>
#include <cerrno>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge/log.h"

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
    for (int fd : idle_) {
        loop_.unwatch(fd);
        ::close(fd);
    }
}

int KeptConnections::acquire(Waiter& who, bool check_idle, bool& reused, int& error) {
    error = 0;
    reused = false;
    // Those already waiting go first.
    if (waiting_.empty()) {
        int fd = take_idle(check_idle);
        if (fd >= 0) {
            reused = true;
            return fd;
        }
        if (open_ < width_) return open_fresh(error);
        // All the backend is taken to serve is busy. Now and then one more, in
        // case it has grown (php-fpm's dynamic pools do); if it is not read, the
        // width comes back down.
        if (options_.learn && width_ < options_.limit && Loop::now() - last_width_change_ >= options_.probe_every) {
            ++width_;
            last_width_change_ = Loop::now();
            log::debug("backend ", options_.address, ": trying ", width_, " connections at once");
            return open_fresh(error);
        }
    }
    waiting_.push_back(&who);
    return -1;
}

void KeptConnections::forget(Waiter& who) {
    auto w = std::find(waiting_.begin(), waiting_.end(), &who);
    if (w != waiting_.end()) waiting_.erase(w);
    read_by_backend(who);
}

void KeptConnections::written(Waiter& who, int fd) {
    if (!options_.learn) return;
    unread_.push_back({&who, fd, Loop::now()});
    if (!unread_timer_) unread_timer_ = loop_.after(options_.unread_after, [this] { check_unread(); });
}

void KeptConnections::read_by_backend(Waiter& who) {
    std::erase_if(unread_, [&](const Unread& u) { return u.who == &who; });
}

void KeptConnections::release(int fd) {
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
    if (open_ > 0) --open_;
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
    idle_.push_back(fd);
}

int KeptConnections::take_idle(bool check) {
    while (!idle_.empty()) {
        int fd = idle_.back();
        idle_.pop_back();
        if (!check) return fd;
        char probe;
        ssize_t n = ::recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fd;  // open and quiet
        close_fd(fd);  // closed by the backend, or it sent something unasked
    }
    return -1;
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
        bool reused = !idle_.empty();
        int error = 0;
        int fd = reused ? take_idle(false) : open_ < width_ ? open_fresh(error) : -2;
        if (fd == -2) return;  // still all busy: the next release serves them
        Waiter* who = waiting_.front();
        waiting_.pop_front();
        who->on_connection(fd, reused, error);
    }
}

void KeptConnections::check_unread() {
    unread_timer_ = 0;
    auto now = Loop::now();
    size_t stuck = 0;
    std::erase_if(unread_, [&](const Unread& u) {
        if (now - u.since < options_.unread_after) return false;
        int queued = 0;
        if (ioctl(u.fd, SIOCOUTQ, &queued) != 0 || queued == 0) return true;  // the backend has read it
        ++stuck;
        return false;
    });
    if (stuck) narrow(open_ > stuck ? open_ - stuck : 1, stuck);
    if (!unread_.empty()) unread_timer_ = loop_.after(options_.unread_after, [this] { check_unread(); });
}

// The backend reads `width` connections at most: keep no more than that.
// Closing idle ones frees their workers for the requests still unread.
void KeptConnections::narrow(size_t width, size_t unread) {
    if (width >= width_) return;
    log::info("backend ", options_.address, " leaves ", unread, " request(s) unread on ", open_,
              " connections: keeping ", width, " connection(s) to it");
    width_ = width;
    last_width_change_ = Loop::now();
    while (open_ > width_ && !idle_.empty()) close_fd(idle_.front());
}

}  // namespace m2b
