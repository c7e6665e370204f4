// The two ZeroMQ sockets of a Mongrel2 Handler, on the loop: PULL connected
// to send_spec (requests), PUB connected to recv_spec (replies), and a
// monitor on the PULL socket that notices when Mongrel2 goes away.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "base/life_token.h"
#include "base/loop.h"
#include "base/unique_fd.h"
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
    void send(std::string_view envelope, OutFrame frame) override;
    void stop_receiving() override;
    size_t queued_bytes() const override { return queued_.bytes.load(std::memory_order_relaxed); }
    void when_queued_below(size_t below, std::function<void()> ready) override;

private:
    // Frames ZeroMQ holds for Mongrel2 (OutFrames handed over, and copies of
    // large ones): counted when sent, and again by
    // libzmq's I/O thread when it has written (or dropped) them, which also
    // wakes the loop through `wake_fd` if someone waits for the count to fall.
    struct QueuedFrames {
        std::atomic<size_t> bytes{0};
        std::atomic<size_t> wake_below{0};  // 0: nobody waits
        UniqueFd wake_fd;
        static void release(void* data, void* hint);
    };

    void publish(zmq::message_t& frame);
    void drain();
    void drain_monitor();
    void wake_waiters();

    Loop& loop_;
    std::string send_spec_;
    QueuedFrames queued_;  // before the context: outlives the I/O thread that releases frames
    std::vector<std::function<void()>> waiters_;
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
