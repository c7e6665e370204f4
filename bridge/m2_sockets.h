// The two ZeroMQ sockets of a Mongrel2 Handler, on the loop: PULL connected
// to send_spec (requests), PUB connected to recv_spec (replies).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "bridge/loop.h"

namespace m2b {

class Mongrel2Sockets {
public:
    using OnMessage = std::function<void(std::string_view)>;

    Mongrel2Sockets(Loop& loop, const std::string& send_spec, const std::string& recv_spec, OnMessage on_message);
    ~Mongrel2Sockets();

    // Single-frame, non-blocking. PUB never blocks; with no HWM it never drops either.
    void send(std::string_view message);
    // Stops taking requests (shutdown); replies still go out.
    void stop_receiving();

private:
    void drain();

    Loop& loop_;
    zmq::context_t context_{1};
    zmq::socket_t pull_;
    zmq::socket_t pub_;
    int pull_fd_ = -1;
    bool receiving_ = true;
    bool drain_posted_ = false;
    OnMessage on_message_;
};

}  // namespace m2b
