// A tiny HTTP/1.0 responder on the event loop that serves GET /metrics for a
// Prometheus scraper, one request per connection.
//
// It faces whoever can reach its port, so everything a client can make it hold
// is bounded: MetricsLimits::max_connections at once (a new one beyond that
// closes the oldest, so idle connections cannot lock a scraper out), a request
// head of max_head bytes, and a deadline after which a connection is closed
// whatever it is doing. Nothing blocks the loop: a slow reader gets what fits
// and the rest when its socket is writable again.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "base/unique_fd.h"
#include "base/loop.h"

namespace m2b {

struct MetricsLimits {
    size_t max_connections = 32;
    size_t max_head = 8192;  // request line and headers
    std::chrono::milliseconds deadline{5000};  // from accept to close
};

class MetricsServer {
public:
    using Render = std::function<std::string()>;

    MetricsServer(Loop& loop, Render render, MetricsLimits limits = {});
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // Listens on "HOST:PORT", "[V6]:PORT" or "PORT" alone (meaning
    // 127.0.0.1:PORT); port 0 picks a free port (see port()). Empty on success,
    // else one line naming the address and what is wrong. Called again (a
    // config reload), the same address string is a no-op; a new one is moved
    // to only once it is bound; connections being answered are kept either way.
    std::string listen(const std::string& address);

    uint16_t port() const { return port_; }  // the bound port, 0 before listen() succeeds
    size_t connection_count() const { return connections_.size(); }

private:

    enum class ConnState {
        ReadingHead,   // waiting for the blank line that ends the request head
        WritingReply,  // the reply is going out as fast as the client reads it
        Draining,      // reply sent and our side shut: reading what the client still sends until it closes,
                       // so closing does not reset the connection under a reply it has not read yet
    };
    struct Connection {
        UniqueFd fd;
        ConnState state = ConnState::ReadingHead;
        std::string head;   // bytes read so far, at most max_head
        std::string reply;  // the whole reply
        size_t sent = 0;    // bytes of reply written
        Loop::TimerId deadline = 0;
    };
    using ConnId = uint64_t;  // in accept order: the lowest is the oldest

    void on_listen_ready();
    void on_connection_event(ConnId id, uint32_t events);
    // Each returns false when the connection is finished and must be closed.
    bool read_head(Connection& conn);
    bool write_reply(Connection& conn);
    bool drain(Connection& conn);
    std::string answer(const std::string& head);
    void close_connection(ConnId id);

    Loop& loop_;
    Render render_;
    MetricsLimits limits_;
    UniqueFd listener_;
    std::string address_;  // as given to the listen() that bound listener_
    uint16_t port_ = 0;
    Loop::TimerId accept_pause_ = 0;  // set while accepting is paused after running out of descriptors
    std::map<ConnId, std::unique_ptr<Connection>> connections_;
    ConnId next_id_ = 1;
};

}  // namespace m2b
