#include "bridge/metrics_server.h"
#include "bridge/metrics.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <exception>
#include <netinet/in.h>
#include <string_view>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/backend_address.h"
#include "base/log.h"

namespace m2b {

namespace {

constexpr int kListenBacklog = 64;
// Accepts per wake-up, so a flood of connections does not keep the loop from
// the handlers; the rest are taken on the next turns.
constexpr int kAcceptsPerTurn = 64;
// Bytes discarded per wake-up while draining, for the same reason.
constexpr int kDrainReadsPerTurn = 16;
// After running out of descriptors, accepting waits this long instead of
// spinning on a listener that stays readable.
constexpr std::chrono::milliseconds kAcceptPause{100};

bool all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "PORT" alone means 127.0.0.1:PORT; a unix socket is refused (Prometheus scrapes over TCP).
std::string resolve_listen_address(const std::string& address, sockaddr_storage& addr, socklen_t& len) {
    if (address.rfind("unix:", 0) == 0) return "expected HOST:PORT or PORT (Prometheus scrapes over TCP)";
    std::string full = all_digits(address) ? "127.0.0.1:" + address : address;
    size_t colon = full.rfind(':');
    if (colon == std::string::npos) return "expected HOST:PORT or PORT";
    std::string_view port(full);
    port.remove_prefix(colon + 1);
    if (!all_digits(port) || port.size() > 5 || std::stoul(std::string(port)) > 65535)
        return "the port must be a number from 0 to 65535";
    return parse_backend_address(full, addr, len);
}

std::string http_response(std::string_view status, std::string_view content_type, std::string_view body,
                          bool send_body, std::string_view extra_headers = "") {
    std::string out;
    out.reserve(160 + (send_body ? body.size() : 0));
    out.append("HTTP/1.0 ").append(status).append("\r\n");
    out.append("Content-Type: ").append(content_type).append("\r\n");
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    out.append(extra_headers);
    out.append("Connection: close\r\n\r\n");
    if (send_body) out.append(body);
    return out;
}

std::string plain_response(std::string_view status, std::string_view body, std::string_view extra_headers = "") {
    return http_response(status, "text/plain; charset=utf-8", body, true, extra_headers);
}

// Where the request head ends ("\r\n\r\n", or "\n\n" from a lenient client),
// looking only at bytes from `from` on; npos if not yet.
size_t head_end(const std::string& head, size_t from) {
    from = from >= 3 ? from - 3 : 0;
    for (size_t i = from; i < head.size(); ++i) {
        if (head[i] != '\n') continue;
        if (i >= 1 && head[i - 1] == '\n') return i + 1;
        if (i >= 3 && head[i - 1] == '\r' && head[i - 2] == '\n' && head[i - 3] == '\r') return i + 1;
    }
    return std::string::npos;
}

}  // namespace

MetricsServer::MetricsServer(Loop& loop, Render render, MetricsLimits limits)
    : loop_(loop), render_(std::move(render)), limits_(limits) {
    limits_.max_connections = std::max<size_t>(limits_.max_connections, 1);
}

MetricsServer::~MetricsServer() {
    for (auto& [id, conn] : connections_) {
        loop_.unwatch(conn->fd.get());
        loop_.cancel(conn->deadline);
    }
    if (listener_) loop_.unwatch(listener_.get());
    if (accept_pause_) loop_.cancel(accept_pause_);
}

std::string MetricsServer::listen(const std::string& address) {
    // A reload with an unchanged address: binding it again would fail as in use.
    if (listener_ && address == address_) return "";
    auto failed = [&](const std::string& why) { return "metrics address " + address + ": " + why; };
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    if (std::string error = resolve_listen_address(address, addr, addr_len); !error.empty()) return failed(error);

    UniqueFd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return failed(std::string("socket: ") + strerror(errno));
    // A restarted daemon binds again at once, despite connections in TIME_WAIT.
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), addr_len) != 0)
        return failed(std::string("bind: ") + strerror(errno));
    if (::listen(fd.get(), kListenBacklog) != 0) return failed(std::string("listen: ") + strerror(errno));

    sockaddr_storage bound{};
    socklen_t bound_len = sizeof bound;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0)
        return failed(std::string("getsockname: ") + strerror(errno));
    uint16_t bound_port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                      : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

    if (!loop_.watch(fd.get(), EPOLLIN, [this](uint32_t) { on_listen_ready(); }))
        return failed(std::string("epoll: ") + strerror(errno));
    // Only now that the new address is bound is the old one let go.
    if (listener_) loop_.unwatch(listener_.get());
    if (accept_pause_) {
        loop_.cancel(accept_pause_);
        accept_pause_ = 0;
    }
    listener_ = std::move(fd);
    address_ = address;
    port_ = bound_port;
    return "";
}

void MetricsServer::on_listen_ready() {
    for (int i = 0; i < kAcceptsPerTurn; ++i) {
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            int error = errno;
            if (error == EAGAIN || error == EWOULDBLOCK) return;
            if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
                log::warn("metrics: cannot accept a connection: ", strerror(error), "; pausing for ",
                          kAcceptPause.count(), " ms");
                loop_.set_events(listener_.get(), 0);
                accept_pause_ = loop_.after(kAcceptPause, [this] {
                    accept_pause_ = 0;
                    loop_.set_events(listener_.get(), EPOLLIN);
                });
                return;
            }
            continue;  // ECONNABORTED, EPROTO, ...: that one connection is gone, the next may be fine
        }
        // Full: the oldest goes, so connections left open cannot lock a scraper out for long.
        if (connections_.size() >= limits_.max_connections) close_connection(connections_.begin()->first);

        ConnId id = next_id_++;
        auto conn = std::make_unique<Connection>();
        int raw_fd = fd.get();
        conn->fd = std::move(fd);
        if (!loop_.watch(raw_fd, EPOLLIN, [this, id](uint32_t events) { on_connection_event(id, events); })) {
            log::warn("metrics: cannot watch a connection: ", strerror(errno));
            continue;  // closed as `conn` goes
        }
        conn->deadline = loop_.after(limits_.deadline, [this, id] { close_connection(id); });
        connections_.emplace(id, std::move(conn));
    }
}

void MetricsServer::on_connection_event(ConnId id, uint32_t) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& conn = *it->second;
    // Errors and hang-ups show up as failed reads and writes below.
    bool keep = false;
    switch (conn.state) {
    case ConnState::ReadingHead: keep = read_head(conn); break;
    case ConnState::WritingReply: keep = write_reply(conn); break;
    case ConnState::Draining: keep = drain(conn); break;
    }
    if (!keep) close_connection(id);
}

bool MetricsServer::read_head(Connection& conn) {
    char buffer[4096];
    for (;;) {
        size_t room = limits_.max_head - conn.head.size();
        if (room == 0) {
            conn.reply = plain_response("400 Bad Request", "Request head too large.\n");
            break;
        }
        ssize_t n = ::recv(conn.fd.get(), buffer, std::min(room, sizeof buffer), 0);
        if (n > 0) {
            size_t searched = conn.head.size();
            conn.head.append(buffer, static_cast<size_t>(n));
            if (head_end(conn.head, searched) != std::string::npos) {
                conn.reply = answer(conn.head);
                break;
            }
            continue;
        }
        if (n == 0) return false;  // gone before finishing its request: nobody to answer
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    conn.head = {};
    conn.state = ConnState::WritingReply;
    return write_reply(conn);
}

bool MetricsServer::write_reply(Connection& conn) {
    while (conn.sent < conn.reply.size()) {
        ssize_t n = ::send(conn.fd.get(), conn.reply.data() + conn.sent, conn.reply.size() - conn.sent, MSG_NOSIGNAL);
        if (n > 0) {
            conn.sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        // A slow reader: the rest when it has made room (the deadline still applies).
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return loop_.set_events(conn.fd.get(), EPOLLOUT);
        return false;
    }
    conn.reply = {};
    ::shutdown(conn.fd.get(), SHUT_WR);  // the client sees the end of the reply now
    conn.state = ConnState::Draining;
    if (!loop_.set_events(conn.fd.get(), EPOLLIN)) return false;
    return drain(conn);
}

bool MetricsServer::drain(Connection& conn) {
    char buffer[4096];
    for (int i = 0; i < kDrainReadsPerTurn; ++i) {
        ssize_t n = ::recv(conn.fd.get(), buffer, sizeof buffer, 0);
        if (n > 0) continue;
        if (n == 0) return false;  // the client has closed: so do we
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    return true;
}

std::string MetricsServer::answer(const std::string& head) {
    ScrapeRequest request = classify_scrape_request(head);
    switch (request) {
        case ScrapeRequest::Bad: return plain_response("400 Bad Request", "Bad request line.\n");
        case ScrapeRequest::NotFound: return plain_response("404 Not Found", "Only /metrics is served here.\n");
        case ScrapeRequest::WrongMethod:
            return plain_response("405 Method Not Allowed", "Only GET and HEAD.\n", "Allow: GET, HEAD\r\n");
        case ScrapeRequest::Get:
        case ScrapeRequest::Head: break;
    }
    bool head_only = request == ScrapeRequest::Head;
    std::string body;
    try {
        body = render_();
    } catch (const std::exception& e) {
        log::error("metrics: rendering failed: ", e.what());
        return plain_response("500 Internal Server Error", "Rendering the metrics failed.\n");
    }
    return http_response("200 OK", "text/plain; version=0.0.4", body, !head_only);
}

void MetricsServer::close_connection(ConnId id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    loop_.unwatch(it->second->fd.get());
    loop_.cancel(it->second->deadline);  // a no-op when the deadline is what fired
    connections_.erase(it);              // closes the descriptor
}

}  // namespace m2b
