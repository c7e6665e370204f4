#include "bridge/m2_sockets.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "base/log.h"

namespace m2b {

namespace {
constexpr int kMessagesPerTurn = 512;  // then let backends and timers run
// Smaller frames given as bytes are copied by libzmq and not counted: they
// cost little each, and what sends many of them (a fan-out) is bounded by ids.
constexpr size_t kCountedFrameBytes = 16 * 1024;
std::atomic<int> monitor_count{0};
}  // namespace

// A counted frame is an OutFrame handed over: the block and its count sit in
// front of the data, since the release (on libzmq's I/O thread) gets only the
// data pointer.
void Mongrel2Sockets::QueuedFrames::release(void* data, void* hint) {
    auto* queued = static_cast<QueuedFrames*>(hint);
    size_t size = OutFrame::free_handed_over(data);
    // seq_cst here and in when_queued_below: each side writes one variable and
    // then reads the other, and neither read may come before the other's write.
    size_t left = queued->bytes.fetch_sub(size) - size;
    size_t below = queued->wake_below.load();
    if (below != 0 && left <= below && queued->wake_below.compare_exchange_strong(below, 0)) {
        uint64_t one = 1;
        (void)!::write(queued->wake_fd.get(), &one, sizeof one);
    }
}

Mongrel2Sockets::Mongrel2Sockets(Loop& loop, const std::string& send_spec, const std::string& recv_spec)
    : loop_(loop), send_spec_(send_spec), pull_(context_, zmq::socket_type::pull),
      pub_(context_, zmq::socket_type::pub), monitor_(context_, zmq::socket_type::pair) {
    // Replies are bounded per request by ReplyStream; a PUB at its high-water
    // mark would silently drop them instead.
    pub_.set(zmq::sockopt::sndhwm, 0);
    pub_.set(zmq::sockopt::linger, 2000);
    pull_.set(zmq::sockopt::linger, 0);
    // Mongrel2 restarted after a crash hands out connection ids from 1 again,
    // without a word: the only sign is the PULL connection dropping.
    std::string monitor_endpoint = "inproc://m2b-monitor-" + std::to_string(monitor_count++);
    if (zmq_socket_monitor(pull_.handle(), monitor_endpoint.c_str(), ZMQ_EVENT_DISCONNECTED) != 0)
        throw zmq::error_t();
    monitor_.connect(monitor_endpoint);
    auto connect = [](zmq::socket_t& socket, const char* what, const std::string& endpoint) {
        try {
            socket.connect(endpoint);
        } catch (const zmq::error_t& e) {
            throw std::runtime_error(std::string(what) + " " + endpoint + ": " + e.what());
        }
    };
    connect(pull_, "send_spec", send_spec);
    connect(pub_, "recv_spec", recv_spec);
    pull_fd_ = pull_.get(zmq::sockopt::fd);
    monitor_fd_ = monitor_.get(zmq::sockopt::fd);
    queued_.wake_fd = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!queued_.wake_fd) throw std::runtime_error(std::string("eventfd: ") + strerror(errno));
    // ZMQ_FD is edge-triggered: each wake-up drains until EAGAIN.
    if (!loop_.watch(pull_fd_, EPOLLIN, [this](uint32_t) { drain(); }) ||
        !loop_.watch(monitor_fd_, EPOLLIN, [this](uint32_t) { drain_monitor(); }) ||
        !loop_.watch(queued_.wake_fd.get(), EPOLLIN, [this](uint32_t) { wake_waiters(); })) {
        std::string why = strerror(errno);
        for (int fd : {pull_fd_, monitor_fd_, queued_.wake_fd.get()}) loop_.unwatch(fd);  // no watch outlives us
        throw std::runtime_error("cannot watch the ZeroMQ sockets: " + why);
    }
    loop_.post(life_.guard([this] {
        drain();
        drain_monitor();
    }));
}

Mongrel2Sockets::~Mongrel2Sockets() {
    if (receiving_) loop_.unwatch(pull_fd_);
    loop_.unwatch(monitor_fd_);
    loop_.unwatch(queued_.wake_fd.get());
    zmq_socket_monitor(pull_.handle(), nullptr, 0);
}

void Mongrel2Sockets::set_receiver(OnMessage on_message, OnServerLost on_server_lost) {
    on_message_ = std::move(on_message);
    on_server_lost_ = std::move(on_server_lost);
}

void Mongrel2Sockets::send(std::string_view message) {
    try {
        pub_.send(zmq::const_buffer(message.data(), message.size()), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
        log::error("zmq send failed: ", e.what());
    }
}

void Mongrel2Sockets::send(std::string_view envelope, std::string_view body) {
    size_t size = envelope.size() + body.size();
    if (size >= kCountedFrameBytes) {
        OutFrame frame(envelope.size(), body.size());
        frame.append(body);
        send(envelope, std::move(frame));
        return;
    }
    zmq::message_t frame(size);
    auto* out = static_cast<char*>(frame.data());
    std::memcpy(out, envelope.data(), envelope.size());
    if (!body.empty()) std::memcpy(out + envelope.size(), body.data(), body.size());
    publish(frame);
}

// As any allocation here: out of memory throws, it does not drop a reply's bytes.
void Mongrel2Sockets::send(std::string_view envelope, OutFrame frame) {
    if (!frame.prepend(envelope)) {  // a sender longer than the room left for it
        send(envelope, frame.view());
        return;
    }
    size_t size = frame.size();
    size_t counted = 0;
    char* data = frame.hand_over(counted);
    zmq::message_t message;
    try {
        message.rebuild(data, size, &QueuedFrames::release, &queued_);
    } catch (...) {  // libzmq did not take the block: its free function will not run
        OutFrame::free_handed_over(data);
        throw;
    }
    queued_.bytes.fetch_add(counted);
    publish(message);
}

void Mongrel2Sockets::publish(zmq::message_t& frame) {
    try {
        pub_.send(frame, zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
        log::error("zmq send failed: ", e.what());
    }
}

void Mongrel2Sockets::when_queued_below(size_t below, std::function<void()> ready) {
    waiters_.push_back(std::move(ready));
    queued_.wake_below.store(std::max<size_t>(below, 1));
    // Frames released before the mark was set wrote nothing: look again. A
    // wake-up twice is harmless; a waiter checks the count when it runs.
    if (queued_.bytes.load() <= below) {
        queued_.wake_below.store(0);
        loop_.post(life_.guard([this] { wake_waiters(); }));
    }
}

void Mongrel2Sockets::wake_waiters() {
    uint64_t count = 0;
    (void)!::read(queued_.wake_fd.get(), &count, sizeof count);
    auto waiting = std::move(waiters_);
    waiters_.clear();
    for (auto& ready : waiting) ready();
}

void Mongrel2Sockets::stop_receiving() {
    if (!receiving_) return;
    receiving_ = false;
    loop_.unwatch(pull_fd_);
    // Mongrel2 then pushes to the handlers still connected (or keeps the
    // requests until one connects) instead of into a queue no one reads.
    try {
        pull_.disconnect(send_spec_);
    } catch (const zmq::error_t&) {
    }
}

void Mongrel2Sockets::drain() {
    drain_posted_ = false;
    for (int i = 0; i < kMessagesPerTurn && receiving_; ++i) {
        zmq::message_t msg;
        zmq::recv_result_t got;
        try {
            got = pull_.recv(msg, zmq::recv_flags::dontwait);
        } catch (const zmq::error_t& e) {
            log::error("zmq recv failed: ", e.what());
            return;
        }
        if (!got) return;  // EAGAIN: the edge is re-armed
        if (msg.more()) {
            log::warn("multipart message from Mongrel2 dropped");
            zmq::message_t rest;
            while (msg.more() && pull_.recv(rest, zmq::recv_flags::dontwait)) msg.swap(rest);
            continue;
        }
        if (on_message_) on_message_(msg.to_string_view());
    }
    // More may be waiting and the edge will not fire again: continue next turn.
    if (receiving_ && !drain_posted_) {
        drain_posted_ = true;
        loop_.post(life_.guard([this] { drain(); }));
    }
}

// Monitor events are two frames: 2 bytes of event, 4 of value; then the endpoint.
void Mongrel2Sockets::drain_monitor() {
    for (;;) {
        zmq::message_t event, endpoint;
        zmq::recv_result_t got;
        try {
            got = monitor_.recv(event, zmq::recv_flags::dontwait);
            if (got && event.more()) (void)monitor_.recv(endpoint, zmq::recv_flags::dontwait);
        } catch (const zmq::error_t& e) {
            log::error("zmq monitor recv failed: ", e.what());
            return;
        }
        if (!got) return;
        uint16_t id = 0;
        if (event.size() >= 2) std::memcpy(&id, event.data(), 2);
        if (id == ZMQ_EVENT_DISCONNECTED && receiving_ && on_server_lost_)
            on_server_lost_("at " + send_spec_ + " disconnected");
    }
}

}  // namespace m2b
