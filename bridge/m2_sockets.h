// The two ZeroMQ sockets of a Mongrel2 Handler, on the loop: PULL connected
// to send_spec (requests), PUB connected to recv_spec (replies), and a
// monitor on the PULL socket that notices when Mongrel2 goes away.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "base/life_token.h"
#include "base/loop.h"
#include "bridge/m2_link.h"

namespace m2b {

class Mongrel2Sockets final : public Mongrel2Link {
public:
    using OnMessage = std::function<void(std::string_view)>;
    using OnServerLost = std::function<void(std::string_view why)>;

    Mongrel2Sockets(Loop& loop, const std::string& send_spec, const std::string& recv_spec);
    ~Mongrel2Sockets() override;

    // Where requests go, and who hears that the server went away. Set before the loop runs.
    void set_receiver(OnMessage on_message, OnServerLost on_server_lost);

    // Single-frame, non-blocking. PUB never blocks; with no HWM it never drops either.
    void send(std::string_view message) override;
    void send(std::string_view envelope, std::string_view body) override;
    void stop_receiving() override;

private:
    void drain();
    void drain_monitor();

    Loop& loop_;
    std::string send_spec_;
    zmq::context_t context_{1};
    zmq::socket_t pull_;
    zmq::socket_t pub_;
    zmq::socket_t monitor_;
    int pull_fd_ = -1;
    int monitor_fd_ = -1;
    bool receiving_ = true;
    bool drain_posted_ = false;
    OnMessage on_message_;
    OnServerLost on_server_lost_;
    LifeToken life_;  // posted drains do nothing once the sockets are gone
};

}  // namespace m2b
