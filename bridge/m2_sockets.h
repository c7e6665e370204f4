// The two sockets of a Mongrel2 Handler, on the loop: one connected to
// send_spec as a PULL (requests), one to recv_spec as a PUB (replies). Both
// speak ZMTP themselves (bridge/zmtp_connection.h): no libzmq I/O thread sits
// between a request and the loop that serves it.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/life_token.h"
#include "base/loop.h"
#include "bridge/m2_link.h"
#include "bridge/zmtp_connection.h"

namespace m2b {

class Mongrel2Sockets final : public Mongrel2Link {
public:
    using OnMessage = std::function<void(std::string_view)>;
    using OnServerLost = std::function<void(std::string_view why)>;

    // Throws std::runtime_error naming an endpoint it cannot use.
    Mongrel2Sockets(Loop& loop, const std::string& send_spec, const std::string& recv_spec);
    ~Mongrel2Sockets() override;

    // Where requests go, and who hears that the server went away. Set before the loop runs.
    void set_receiver(OnMessage on_message, OnServerLost on_server_lost);

    // Single-frame, never blocks. Dropped, as a PUB drops them, while Mongrel2
    // is not connected. What is queued is written when the loop turn ends; the
    // owner keeps the sockets until queued_bytes() is 0 (or 2 s, as libzmq's
    // linger) before destroying them (Service).
    void send(std::string_view message) override;
    void send(std::string_view envelope, std::string_view body) override;
    void send(std::string_view envelope, OutFrame frame) override;
    void stop_receiving() override;
    size_t queued_bytes() const override { return replies_.queued_bytes(); }
    void when_queued_below(size_t below, std::function<void()> ready) override;

private:
    void server_lost(ZmtpConnection& lost, ZmtpConnection& other, std::string_view why);
    void wake_waiters();

    Loop& loop_;
    ZmtpConnection requests_;  // PULL
    ZmtpConnection replies_;   // PUB
    std::vector<std::function<void()>> waiters_;
    size_t wake_below_ = 0;
    bool wake_posted_ = false;
    OnMessage on_message_;
    OnServerLost on_server_lost_;
    LifeToken life_;  // posted wake-ups do nothing once the sockets are gone
};

}  // namespace m2b
