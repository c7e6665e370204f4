// One Mongrel2 Handler: its sockets, the requests in flight and waiting, the
// in-flight limit and queue, disconnects, ctl keep-alive, and connections
// held open by an empty X-Mongrel2-Deliver.
#pragma once

#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "adapters/gateway.h"
#include "bridge/config.h"
#include "bridge/loop.h"
#include "bridge/m2_sockets.h"
#include "bridge/transaction.h"

namespace m2b {

class Handler final : public TransactionOwner {
public:
    Handler(Loop& loop, const HandlerConfig& config, Gateway& gateway);
    ~Handler() override;

    // Stops taking requests; calls `done` once nothing is in flight.
    void shutdown(std::function<void()> done);
    void reopen_logs();
    size_t in_flight() const { return holding_slot_.size(); }

    // TransactionOwner
    void send(std::string_view message) override;
    void finished(Transaction& t) override;
    void hold(const std::string& sender, uint64_t conn_id, const ReplyContext& ctx) override;
    void deliver(const std::string& sender, std::span<const uint64_t> ids, std::string_view bytes) override;
    void access_log(const Transaction& t) override;
    size_t send_window(uint64_t conn_id) override;
    void sent_bytes(uint64_t conn_id, size_t bytes) override;

private:
    struct Held {
        std::string sender;
        ReplyContext ctx;
    };

    void on_message(std::string_view message);
    void on_request(Request request);
    void on_disconnect(uint64_t conn_id);
    void admit(Transaction& t);
    void start_waiting();
    void keepalive_tick();
    void check_shutdown();

    Loop& loop_;
    const HandlerConfig& config_;
    Gateway& gateway_;
    TransactionSettings settings_;
    Mongrel2Sockets sockets_;
    // Per connection, its requests in arrival order; only the front one is
    // admitted, so pipelined requests are answered in order.
    std::unordered_map<uint64_t, std::deque<std::unique_ptr<Transaction>>> by_conn_;
    std::deque<Transaction*> waiting_;  // admitted, waiting for a backend slot
    std::unordered_set<Transaction*> holding_slot_;  // admitted and started: counts against --max-requests
    std::unordered_map<uint64_t, Held> held_;
    // Connections under Mongrel2's download.flow_control: bytes sent and not yet credited.
    struct Flow {
        uint64_t window = 0;
        uint64_t outstanding = 0;
    };
    std::unordered_map<uint64_t, Flow> flow_;
    Loop::TimerId keepalive_timer_ = 0;
    std::function<void()> on_drained_;
    FILE* access_log_ = nullptr;
};

}  // namespace m2b
