// One Mongrel2 Handler: the connections it serves and, per connection, its
// pipelined requests (answered in order), long-polls held by an empty
// X-Mongrel2-Deliver, download credits and message pacing; the in-flight
// limit and queue; disconnects, Mongrel2 restarts, ctl keep-alive, deliver.
//
// Everything a connection can make the handler hold is bounded: requests per
// connection (--max-pipelined), requests waiting for a slot (--queue), held
// connections, and reply bytes (per request, in ReplyStream).
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <memory_resource>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "adapters/gateway.h"
#include "bridge/access_log.h"
#include "bridge/config.h"
#include "base/loop.h"
#include "bridge/m2_link.h"
#include "bridge/transaction.h"

namespace m2b {

class Handler final : public TransactionOwner {
public:
    // `access_log` may be null (none) and is shared with other handlers.
    Handler(Loop& loop, const HandlerConfig& config, Gateway& gateway, Mongrel2Link& link,
            AccessLog* access_log = nullptr);
    ~Handler() override;

    // A message from Mongrel2's PUSH socket.
    void on_message(std::string_view message);
    // Mongrel2 went away (crash or restart): its connection ids mean nothing
    // any more, so every request and connection state is dropped.
    void on_server_lost(std::string_view why);

    // Stops taking requests; calls `done` once nothing is in flight.
    void shutdown(std::function<void()> done);
    size_t in_flight() const { return in_flight_.size(); }
    size_t queued() const { return waiting_.size(); }
    size_t connections() const { return conns_.size(); }
    // Whether this handler still has state for a connection (a reload sends
    // such connections' messages to the old handler until it is drained).
    bool knows(uint64_t conn_id) const { return !drained_ && conns_.count(conn_id) > 0; }
    // Reload on the same sockets: long-polls held here with nothing behind
    // them, and the JSON sockets, become `next`'s, so they are kept alive and
    // their disconnects reported by the handler that stays.
    void hand_over_idle_holds(Handler& next);
    // Called once per finished request: its status (0: none sent) and duration.
    void set_observer(std::function<void(int status, double seconds)> observer) { observer_ = std::move(observer); }

    // TransactionOwner
    size_t send_window(uint64_t conn_id) override;
    size_t frame_limit(uint64_t conn_id) override;
    bool waits_on_server(uint64_t conn_id) override;
    void send_to(const std::string& sender, uint64_t conn_id, std::string_view bytes) override;
    void send_to(const std::string& sender, uint64_t conn_id, OutFrame frame) override;
    void released(Transaction& t) override;
    void finished(Transaction& t) override;
    void hold(Transaction& t) override;
    void deliver(Transaction& t, std::span<const uint64_t> ids, std::string full, std::string head_only) override;
    void abandon(Transaction& t) override;
    void access_log(const Transaction& t) override;

private:
    // A held long-poll; "not held" is a null sender. Used like the optional it
    // replaces (if (c.held), c.held->ctx, c.held.reset()) without the optional's
    // extra word: 10,000 long-polls are 10,000 of these.
    struct Held {
        const std::string* sender = nullptr;  // interned: one copy for every connection of a server
        ReplyContext ctx;
        bool delivering = false;  // named by a delivery not sent yet

        explicit operator bool() const { return sender != nullptr; }
        Held* operator->() { return this; }
        const Held* operator->() const { return this; }
        void reset() { *this = Held{}; }
    };
    struct Connection {
        // front: the one being answered. A list, not a deque: libstdc++'s deque
        // allocates some 600 bytes even when empty, as it is while a client is held.
        std::list<std::unique_ptr<Transaction>> queue;
        Held held;
        // Fields most connections never use, allocated for those that do.
        struct Rare {
            std::string upload_started;  // path of an upload Mongrel2 is still writing
            std::string pattern;         // the route of its last request (--disconnect-path only)
        };
        std::unique_ptr<Rare> rare;
        Rare& rare_fields() {
            if (!rare) rare = std::make_unique<Rare>();
            return *rare;
        }
        bool uploading() const { return rare && !rare->upload_started.empty(); }
        // 32 bits each, so that a connection's node stays within 96 bytes.
        uint32_t window = 0;          // download.flow_control window (0: not flow-controlled)
        uint32_t outstanding = 0;     // bytes sent and not yet credited
        // The window less a margin: Mongrel2 closes a flow-controlled
        // connection whose queued bytes pass the window.
        uint32_t usable_window() const { return window - std::min(window, uint32_t{1024}); }
        float tokens = 0;             // pacing without flow control: messages that may go now
        bool refused = false;         // went past --max-pipelined: later requests are dropped
        Loop::Clock::time_point refilled{};
        Loop::Clock::time_point last_seen{};
    };
    // 10,000 held long-polls are 10,000 map nodes: with the key and the link,
    // this keeps each in the pool's 96-byte class, not its 112-byte one.
    static_assert(sizeof(Connection) <= 80);
    // One delivered reply going out over several turns, so memory does not
    // grow with ids × body.
    struct Delivery {
        std::string sender;
        std::shared_ptr<const std::string> full, head_only;
        std::vector<uint64_t> full_ids, head_ids;
        std::unordered_set<uint64_t> close_after;
        size_t next = 0;  // index over full_ids then head_ids
    };

    void on_request(Request request);
    void enqueue(Connection& c, std::unique_ptr<Transaction> t);
    void drop_connection(uint64_t conn_id, const char* why);
    void post_once(bool& posted, void (Handler::*run)());
    void schedule_admissions();
    void run_admissions();
    void admit(Transaction& t);
    void release_hold(uint64_t conn_id);
    void maybe_forget(uint64_t conn_id);
    void schedule_deliveries();
    bool send_delivery_batch(Delivery& d);
    void run_deliveries();
    void count_sent(uint64_t conn, size_t bytes);  // credits or a pacing token
    bool queue_full();
    void return_memory_when_idle();
    void wake_waiting_senders();
    void keepalive_tick();
    void check_shutdown();
    void drop_stalled_replies();
    void dispose(std::unique_ptr<Transaction> t);
    void send_disconnect_notice(const std::string& sender, uint64_t conn_id, const std::string& pattern,
                                bool json_socket);
    void end_notice(Transaction& t);
    static const std::string* interned_sender(const std::string& sender);

    Loop& loop_;
    const HandlerConfig& config_;
    Gateway& gateway_;
    Mongrel2Link& link_;
    TransactionSettings settings_;

    // Connection nodes come from a pool of their own, packed together instead of
    // scattered between the transactions' memory: held long-polls cost their
    // node and little else.
    std::pmr::unsynchronized_pool_resource conn_pool_;
    std::pmr::unordered_map<uint64_t, Connection> conns_{&conn_pool_};
    std::deque<uint64_t> ready_;                  // connections whose front request may be admitted
    std::deque<Transaction*> waiting_;            // admitted, waiting for a backend slot
    std::unordered_set<Transaction*> in_flight_;  // hold a backend slot
    size_t held_count_ = 0;
    uint32_t flow_window_ = 0;  // learned from the first DOWNLOAD_CREDITS: the server's setting
    std::deque<Delivery> deliveries_;
    // Connections waiting for a pacing token, or for the queue to Mongrel2 to drain,
    // woken in the order they began to wait: the first to wait sends first.
    struct SendWaiting {
        std::unordered_set<uint64_t> members;
        std::vector<uint64_t> order;  // may name members erased since; skipped
        void add(uint64_t conn) {
            if (!members.insert(conn).second) return;
            if (order.size() > 2 * members.size() + 64)
                std::erase_if(order, [&](uint64_t c) { return !members.count(c); });
            order.push_back(conn);
        }
        bool contains(uint64_t conn) const { return members.count(conn) > 0; }
        void erase(uint64_t conn) { members.erase(conn); }
    };
    SendWaiting send_waiting_;
    bool admissions_posted_ = false;
    bool deliveries_posted_ = false;
    uint32_t ended_since_trim_ = 0;
    bool queue_waiting_ = false;  // for the queue to Mongrel2 to drain
    Loop::TimerId pacing_timer_ = 0;
    Loop::TimerId keepalive_timer_ = 0;
    Loop::TimerId shutdown_timer_ = 0;
    std::function<void()> on_drained_;
    AccessLog* access_log_;
    std::function<void(int, double)> observer_;
    // Connections that spoke as JSON sockets, with their route's PATTERN: when
    // they leave, --disconnect-path is told.
    std::unordered_map<uint64_t, std::string> json_sockets_;
    bool drained_ = false;  // shutdown's `done` has run: nothing new is taken
    // Requests to --disconnect-path: on no connection, so owned here.
    std::vector<std::unique_ptr<Transaction>> notices_;
    std::shared_ptr<const char> alive_ = std::make_shared<const char>(0);  // guards posted tasks
};

}  // namespace m2b
