#include "adapters/byte_pump.h"

#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

namespace m2b {

namespace {

constexpr int kReadsPerWakeup = 4;  // fairness between requests
constexpr size_t kScratchSize = 64 * 1024;

}  // namespace

BytePump::BytePump(Loop& loop, Protocol& protocol, std::chrono::milliseconds timeout)
    : loop_(loop), protocol_(protocol),
      silence_(loop, timeout, [this] { protocol_.silent(stage_ == Stage::Connecting); }) {}

std::span<char> BytePump::scratch() {
    // One loop per process, and what is read is handed on before the next read.
    static char buffer[kScratchSize];
    return {buffer, sizeof buffer};
}

bool BytePump::start_socket(UniqueFd socket, Connect connect) {
    close();
    uint64_t session = ++session_;
    duplex_ = true;
    request_fd_ = std::move(socket);
    sending_ = true;
    stage_ = connect == Connect::InProgress ? Stage::Connecting : Stage::Pumping;
    // Most requests fit the socket buffer: written now, the watch starts without EPOLLOUT.
    if (stage_ == Stage::Pumping) {
        flush();
        if (!same(session)) return true;
    }
    int fd = request_fd_.get();
    auto callback = [this](uint32_t events) { on_socket(events); };
    if (connect == Connect::Kept) {
        request_watched_ = loop_.rebind(fd, callback);
        return request_watched_ && loop_.set_events(fd, socket_events());
    }
    request_watched_ = loop_.watch(fd, socket_events(), callback);
    return request_watched_;
}

bool BytePump::start_pipes(UniqueFd request, UniqueFd response, UniqueFd diagnostics) {
    close();
    uint64_t session = ++session_;
    duplex_ = false;
    request_fd_ = std::move(request);
    response_fd_ = std::move(response);
    diagnostics_fd_ = std::move(diagnostics);
    sending_ = true;
    stage_ = Stage::Pumping;
    response_watched_ = loop_.watch(response_fd_.get(), response_events(), [this](uint32_t) { read_response(); });
    if (!response_watched_) return false;
    if (diagnostics_fd_) {
        diagnostics_watched_ = loop_.watch(diagnostics_fd_.get(), EPOLLIN, [this](uint32_t) { read_diagnostics(); });
        if (!diagnostics_watched_) return false;
    }
    // A bodiless request closes the pipe at once: no watch, no wake-up.
    flush();
    if (!same(session) || !sending_) return true;
    request_watched_ = loop_.watch(request_fd_.get(), EPOLLOUT, [this](uint32_t) { flush(); });
    return request_watched_;
}

uint32_t BytePump::socket_events() const {
    if (stage_ == Stage::Connecting) return EPOLLOUT;
    uint32_t events = sending_ ? uint32_t{EPOLLOUT} : 0u;
    // Paused and nothing to send: 0, out of epoll, where EPOLLHUP cannot wake it.
    if (!paused_) events |= EPOLLIN | EPOLLRDHUP;
    return events;
}

void BytePump::update_events() {
    if (stage_ == Stage::Stopped) return;
    bool ok = true;
    if (duplex_ && request_watched_)
        ok = loop_.set_events(request_fd_.get(), socket_events());
    else if (!duplex_ && response_watched_)
        ok = loop_.set_events(response_fd_.get(), response_events());
    if (!ok) protocol_.watch_failed(errno);
}

void BytePump::on_socket(uint32_t events) {
    uint64_t session = session_;
    if (stage_ == Stage::Stopped) return;
    if (stage_ == Stage::Connecting) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(request_fd_.get(), SOL_SOCKET, SO_ERROR, &error, &len);
        if (error != 0) {
            protocol_.connect_failed(error);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        stage_ = Stage::Pumping;
        silence_.activity();
    }
    if (sending_) {
        flush();
        if (!same(session)) return;
    }
    if (!paused_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
        read_response();
        if (!same(session)) return;
    }
    update_events();
}

void BytePump::flush() {
    uint64_t session = session_;
    while (sending_ && same(session)) {
        std::string_view bytes = protocol_.unsent();
        if (!same(session)) return;
        if (bytes.empty()) {
            request_done();
            return;
        }
        int fd = request_fd_.get();
        ssize_t n = duplex_ ? ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL)
                            : ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            int error = errno;
            request_done();
            protocol_.send_failed(error);
            return;
        }
        silence_.activity();  // the backend took request bytes
        protocol_.sent(static_cast<size_t>(n));
    }
}

// The whole request is out (or the backend refused the rest). A pipe is
// closed: the script reads EOF after exactly CONTENT_LENGTH bytes.
void BytePump::request_done() {
    sending_ = false;
    if (duplex_) return;  // the socket's watch drops EPOLLOUT on its next update
    if (request_watched_) loop_.unwatch(request_fd_.get());
    request_watched_ = false;
    request_fd_.reset();
}

void BytePump::read_response() {
    uint64_t session = session_;
    int fd = response_fd();
    for (int i = 0; i < kReadsPerWakeup; ++i) {
        if (!same(session) || paused_) return;
        std::span<char> space = protocol_.read_space();
        if (!same(session) || space.empty()) return;
        ssize_t n = ::read(fd, space.data(), space.size());
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            protocol_.read_ended(errno);
            return;
        }
        if (n == 0) {
            protocol_.read_ended(0);
            return;
        }
        protocol_.received(static_cast<size_t>(n));
    }
}

void BytePump::read_diagnostics() {
    uint64_t session = session_;
    std::span<char> buffer = scratch();
    for (int i = 0; i < kReadsPerWakeup && same(session) && diagnostics_fd_; ++i) {
        ssize_t n = ::read(diagnostics_fd_.get(), buffer.data(), buffer.size());
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            loop_.unwatch(diagnostics_fd_.get());
            diagnostics_watched_ = false;
            diagnostics_fd_.reset();
            return;
        }
        protocol_.diagnostics(std::string_view(buffer.data(), static_cast<size_t>(n)));
    }
}

void BytePump::set_paused(bool paused) {
    if (paused_ == paused) return;
    paused_ = paused;
    silence_.set_paused(paused);
    update_events();
}

void BytePump::read_now() {
    uint64_t session = session_;
    read_diagnostics();  // first: the script's last words are logged before its response ends
    if (same(session) && !paused_) read_response();
}

void BytePump::close() {
    ++session_;
    stage_ = Stage::Stopped;
    sending_ = false;
    auto drop = [this](UniqueFd& fd, bool& watched) {
        if (watched) loop_.unwatch(fd.get());
        watched = false;
        fd.reset();
    };
    drop(request_fd_, request_watched_);
    drop(response_fd_, response_watched_);
    drop(diagnostics_fd_, diagnostics_watched_);
}

void BytePump::stop() {
    silence_.stop();
    close();
}

UniqueFd BytePump::release_socket() {
    UniqueFd socket;
    if (duplex_) {
        socket = std::move(request_fd_);
        request_watched_ = false;  // the watch goes with it
    }
    close();
    return socket;
}

}  // namespace m2b
