#include "bridge/m2_sockets.h"

#include <sys/epoll.h>

#include "bridge/log.h"

namespace m2b {

namespace {
constexpr int kMessagesPerTurn = 512;  // then let backends and timers run
}

Mongrel2Sockets::Mongrel2Sockets(Loop& loop, const std::string& send_spec, const std::string& recv_spec,
                                 OnMessage on_message)
    : loop_(loop), pull_(context_, zmq::socket_type::pull), pub_(context_, zmq::socket_type::pub),
      on_message_(std::move(on_message)) {
    // Replies are bounded per request by the pacing in Transaction; a PUB at
    // its high-water mark would silently drop them instead.
    pub_.set(zmq::sockopt::sndhwm, 0);
    pub_.set(zmq::sockopt::linger, 2000);
    pull_.set(zmq::sockopt::linger, 0);
    pull_.connect(send_spec);
    pub_.connect(recv_spec);
    pull_fd_ = pull_.get(zmq::sockopt::fd);
    // ZMQ_FD is edge-triggered: each wake-up drains until EAGAIN (see drain()).
    loop_.watch(pull_fd_, EPOLLIN, [this](uint32_t) { drain(); });
    loop_.post([this] { drain(); });
}

Mongrel2Sockets::~Mongrel2Sockets() { loop_.unwatch(pull_fd_); }

void Mongrel2Sockets::send(std::string_view message) {
    try {
        pub_.send(zmq::const_buffer(message.data(), message.size()), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
        log::error("zmq send failed: ", e.what());
    }
}

void Mongrel2Sockets::stop_receiving() {
    receiving_ = false;
    loop_.unwatch(pull_fd_);
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
        on_message_(msg.to_string_view());
    }
    // More may be waiting and the edge will not fire again: continue next turn.
    if (receiving_ && !drain_posted_) {
        drain_posted_ = true;
        loop_.post([this] { drain(); });
    }
}

}  // namespace m2b
