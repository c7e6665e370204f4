#include "bridge/handler.h"

#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>

#include "base/log.h"
#include "bridge/m2_reply.h"
#include "bridge/upload.h"

namespace m2b {

namespace {

constexpr size_t kMaxHeld = 100000;
// Work done per loop turn before timers, backends and Mongrel2 get their turn.
constexpr int kAdmissionsPerTurn = 256;
// Requests ended, at least, between two returns of freed memory to the kernel.
constexpr uint32_t kEndedBeforeTrim = 1024;
constexpr size_t kDeliveryBytesPerTurn = 4 * 1024 * 1024;
// Replies and fan-outs wait while more than this is queued for Mongrel2, and
// go on when half is: what a Mongrel2 that stops reading costs is
// bounded, and a delivery's memory does not grow with its ids.
constexpr size_t kQueuedBytesHigh = 8 * 1024 * 1024;
// Bounds what clients can make m2bridge remember or ask of the backend when they leave.
constexpr size_t kMaxJsonSockets = 100000;
// Distinct Mongrel2 servers whose connections may be held, over the process's life.
constexpr size_t kMaxSenders = 1024;

}  // namespace

Handler::Handler(Loop& loop, const HandlerConfig& config, Gateway& gateway, Mongrel2Link& link,
                 AccessLog* access_log)
    : loop_(loop), config_(config), gateway_(gateway), link_(link), access_log_(access_log) {
    // One resolver for both modes: a directory to walk, or one fixed script.
    settings_.script.index = config.index;
    settings_.env.document_root = config.document_root;
    if (config.mode == Mode::Cgi) {
        settings_.script.require_executable = true;
        settings_.allow_nph = true;
        if (config.cgi_directory)
            settings_.script.directory = config.backend;
        else
            settings_.env.script_filename = config.backend;
    } else {
        bool front_controller = !config.script_filename.empty();
        settings_.script.directory = front_controller ? "" : config.document_root;
        settings_.env.script_filename = config.script_filename;
    }
    settings_.reply.buffer_limit = config.buffer_size;
    settings_.reply.send_timeout = config.send_timeout();
    settings_.deadline = config.deadline();
    settings_.upload_owner = config.upload_owner;
    settings_.sendfile_roots = config.sendfile_roots;
    keepalive_timer_ = loop_.after(config_.keepalive(), [this] { keepalive_tick(); });
}

Handler::~Handler() {
    loop_.cancel(keepalive_timer_);
    if (shutdown_timer_) loop_.cancel(shutdown_timer_);
    if (pacing_timer_) loop_.cancel(pacing_timer_);
    for (auto& [id, c] : conns_)
        for (auto& t : c.queue) t->cancel();
    for (auto& t : notices_) t->cancel();
}

void Handler::on_message(std::string_view message) {
    auto parsed = parse_m2_message(message);
    if (auto* error = std::get_if<ParseError>(&parsed)) {
        log::warn("dropped a malformed message from Mongrel2 (", error->what, "): ", log::printable(message, 120));
        return;
    }
    Request request = std::move(std::get<Request>(parsed));
    switch (request.kind) {
        case MessageKind::Disconnect: {
            uint64_t conn = request.conn_id;
            auto it = conns_.find(conn);
            auto json = json_sockets_.find(conn);
            if (!config_.disconnect_path.empty() && !drained_) {
                // Before the drop: a notice in flight keeps a draining handler alive.
                if (json != json_sockets_.end())
                    send_disconnect_notice(request.sender, conn, json->second, true);
                else if (it != conns_.end() && it->second.held)
                    send_disconnect_notice(request.sender, conn, it->second.rare_fields().pattern, false);
            }
            drop_connection(conn, "client went away");
            return;
        }
        case MessageKind::Credits: {
            auto it = conns_.find(request.conn_id);
            if (it == conns_.end()) return;
            Connection& c = it->second;
            c.outstanding -= static_cast<uint32_t>(std::min<uint64_t>(c.outstanding, request.credits));
            c.last_seen = Loop::now();
            if (!c.queue.empty()) c.queue.front()->writable();
            maybe_forget(request.conn_id);
            return;
        }
        case MessageKind::WebSocket:
            if (request.header_or("METHOD", "") == "WEBSOCKET_HANDSHAKE") {
                log::warn("conn=", request.conn_id, " websocket handshake refused: not supported");
                link_.send(encode_reply(request.sender, request.conn_id,
                                        "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
                link_.send(encode_reply(request.sender, request.conn_id, ""));
            }
            return;
        case MessageKind::Other:
            log::debug("conn=", request.conn_id, " ignored message with path ", log::printable(request.path));
            return;
        case MessageKind::JsonSocket:
            if (!config_.disconnect_path.empty() &&
                (json_sockets_.size() < kMaxJsonSockets || json_sockets_.count(request.conn_id)))
                json_sockets_[request.conn_id] = request.header_or("PATTERN", "");
            on_request(std::move(request));
            return;
        case MessageKind::Http:
            on_request(std::move(request));
            return;
    }
}

void Handler::on_request(Request request) {
    uint64_t conn = request.conn_id;
    if (const std::string* credits = request.header("DOWNLOAD_CREDITS")) {
        // Only a connection's first request names the window; it is the server's setting.
        uint64_t window = std::strtoull(credits->c_str(), nullptr, 10);
        if (window > 0) flow_window_ = static_cast<uint32_t>(std::min<uint64_t>(window, UINT32_MAX));
    }
    auto [it, fresh] = conns_.try_emplace(conn);
    Connection& c = it->second;
    if (fresh) {
        c.window = flow_window_;
        c.tokens = static_cast<float>(config_.pacing_burst);
        c.refilled = Loop::now();
    }
    c.last_seen = Loop::now();
    if (!config_.disconnect_path.empty()) c.rare_fields().pattern = request.header_or("PATTERN", "");
    if (c.refused) {
        log::debug("conn=", conn, " dropped a request after the pipeline limit");
        return;
    }
    UploadCheck upload = check_upload(request, config_.upload_store);
    std::string upload_file;
    switch (upload.state) {
        case UploadCheck::State::None:
            break;
        case UploadCheck::State::Started:
            log::debug("conn=", conn, " upload started; waiting for it to finish");
            c.rare_fields().upload_started = upload.reported;
            return;
        case UploadCheck::State::Done:
            if (!c.uploading() || c.rare->upload_started != upload.reported) {
                // Only the connection Mongrel2 announced the upload on may claim the file.
                log::warn("conn=", conn, " ignored forged upload header: upload-done without a matching upload-start");
            } else {
                upload_file = upload.file;
            }
            if (c.rare) c.rare->upload_started.clear();
            break;
        case UploadCheck::State::Forged:
            log::warn("conn=", conn, " ignored forged upload header: ", upload.why);
            break;
        case UploadCheck::State::Refused:
            if (upload.finished) {
                log::warn("conn=", conn, " dropped the end of a refused upload: ", upload.why);
                return;
            }
            break;
    }
    auto t = std::make_unique<Transaction>(loop_, gateway_, settings_, *this, std::move(request));
    if (!upload_file.empty()) t->attach_upload(upload_file);
    if (upload.state == UploadCheck::State::Refused) {
        // At the start, so Mongrel2 stops writing and removes the file when the connection closes.
        t->refuse(413, upload.why, true);
    }
    enqueue(c, std::move(t));
}

void Handler::enqueue(Connection& c, std::unique_ptr<Transaction> t) {
    uint64_t conn = t->conn_id();
    if (c.queue.size() > config_.max_pipelined) {
        t->refuse(503, "more than " + std::to_string(config_.max_pipelined) +
                           " pipelined requests waiting; closing the connection", true);
        c.refused = true;
    }
    c.queue.push_back(std::move(t));
    if (c.queue.size() == 1 && !c.held) {
        ready_.push_back(conn);
        schedule_admissions();
    }
}

// Admission runs from a posted task, never from inside a transaction's
// callback: a request answered at once (404, 503) must not start the next one
// recursively, however many a client pipelines.
void Handler::schedule_admissions() { post_once(admissions_posted_, &Handler::run_admissions); }

// Posts `run` for the next turn unless it is already posted; nothing runs if
// the handler is gone by then.
void Handler::post_once(bool& posted, void (Handler::*run)()) {
    if (posted) return;
    posted = true;
    std::weak_ptr<const char> alive = alive_;
    loop_.post([this, alive, run] {
        if (alive.lock()) (this->*run)();
    });
}

void Handler::run_admissions() {
    admissions_posted_ = false;
    int budget = kAdmissionsPerTurn;
    while (budget > 0 && in_flight_.size() < config_.in_flight_limit() && !waiting_.empty()) {
        Transaction* t = waiting_.front();
        waiting_.pop_front();
        in_flight_.insert(t);
        t->start();
        --budget;
    }
    while (budget > 0 && !ready_.empty()) {
        uint64_t conn = ready_.front();
        ready_.pop_front();
        auto it = conns_.find(conn);
        if (it == conns_.end() || it->second.held || it->second.queue.empty()) continue;
        Transaction& t = *it->second.queue.front();
        if (t.state() != Transaction::State::Queued) continue;
        admit(t);
        --budget;
    }
    bool more = !ready_.empty() || (in_flight_.size() < config_.in_flight_limit() && !waiting_.empty());
    if (more) schedule_admissions();
}

void Handler::admit(Transaction& t) {
    if (in_flight_.size() < config_.in_flight_limit()) {
        in_flight_.insert(&t);
        t.start();
    } else if (waiting_.size() < config_.queue) {
        t.wait_for_slot();
        waiting_.push_back(&t);
    } else {
        t.refuse(503, "queue full (" + std::to_string(config_.queue) + " waiting)", false);
        in_flight_.insert(&t);  // released at once
        t.start();
    }
}

void Handler::released(Transaction& t) {
    in_flight_.erase(&t);
    if (!waiting_.empty()) schedule_admissions();
}

void Handler::finished(Transaction& t) {
    in_flight_.erase(&t);
    if (t.discards_own_reply()) {
        end_notice(t);
        return;
    }
    uint64_t conn = t.conn_id();
    auto it = conns_.find(conn);
    if (it != conns_.end()) {
        auto& queue = it->second.queue;
        auto pos = std::find_if(queue.begin(), queue.end(), [&](const auto& p) { return p.get() == &t; });
        if (pos != queue.end()) {
            dispose(std::move(*pos));
            queue.erase(pos);
        }
        if (!queue.empty() && !it->second.held) {
            ready_.push_back(conn);
            schedule_admissions();
        }
        maybe_forget(conn);
    }
    if (!waiting_.empty()) schedule_admissions();
    return_memory_when_idle();
    check_shutdown();
}

// After a burst (many requests waiting for the backend at once, each with its
// parsed request and environment), the freed memory stays with malloc; once
// nothing is in flight or waiting, hand it back to the kernel, so that RSS
// returns to what the live connections need.
void Handler::return_memory_when_idle() {
    if (++ended_since_trim_ < kEndedBeforeTrim || !in_flight_.empty() || !waiting_.empty()) return;
    ended_since_trim_ = 0;
    malloc_trim(0);
}

void Handler::dispose(std::unique_ptr<Transaction> t) {
    loop_.dispose_later(std::move(t));  // we may be inside one of its callbacks
}

// Forgets a connection that holds nothing: no request, no hold, no upload,
// no bytes awaiting credits. A later request makes it again.
void Handler::maybe_forget(uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    const Connection& c = it->second;
    if (c.queue.empty() && !c.held && !c.uploading() && c.outstanding == 0 && !c.refused &&
        !send_waiting_.contains(conn))
        conns_.erase(it);
}

void Handler::drop_connection(uint64_t conn, const char* why) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    Connection c = std::move(it->second);
    conns_.erase(it);
    json_sockets_.erase(conn);
    if (c.held) --held_count_;
    send_waiting_.erase(conn);
    for (auto& t : c.queue) {
        in_flight_.erase(t.get());
        waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), t.get()), waiting_.end());
        if (t->state() != Transaction::State::Queued || &t == &c.queue.front())
            log::info("conn=", conn, " ", why, "; request cancelled");
        t->cancel();
        dispose(std::move(t));
    }
    schedule_admissions();
    check_shutdown();
}

void Handler::on_server_lost(std::string_view why) {
    size_t requests = 0;
    for (auto& [id, c] : conns_) requests += c.queue.size();
    if (!conns_.empty())
        log::warn("Mongrel2 ", why, ": dropping ", conns_.size(), " connection(s) and ", requests,
                  " request(s) of the old server");
    std::vector<uint64_t> ids;
    for (auto& [id, c] : conns_) ids.push_back(id);
    for (uint64_t id : ids) drop_connection(id, "Mongrel2 went away");
    deliveries_.clear();
    ready_.clear();
    json_sockets_.clear();
}

// --disconnect-path: the app learns that a client it held (or a JSON socket)
// is gone, as the seed's chat handler learned it from Mongrel2. The request
// takes a slot like any other; whatever it answers to the gone id is dropped.
void Handler::send_disconnect_notice(const std::string& sender, uint64_t conn, const std::string& pattern,
                                     bool json_socket) {
    // Bounded well below the queue: a crowd leaving at once must not crowd out requests.
    if (notices_.size() >= std::max<size_t>(1, config_.in_flight_limit())) {
        log::warn("conn=", conn, " too many disconnect notices waiting; not telling ", config_.disconnect_path);
        return;
    }
    Request r;
    // A JSON socket's notice answers raw, as any reply to one does (a deliver too).
    r.kind = json_socket ? MessageKind::JsonSocket : MessageKind::Http;
    r.sender = sender;
    r.conn_id = conn;
    std::string_view target = config_.disconnect_path;
    size_t query = target.find('?');
    r.path = std::string(target.substr(0, query));
    r.body = R"({"type":"disconnect"})";
    auto add = [&](const char* name, std::string_view value) {
        r.headers.push_back(Header{name, {std::string(value)}});
    };
    add("PATH", r.path);
    add("PATTERN", pattern);
    add("URI", target);
    if (query != std::string_view::npos) add("QUERY", target.substr(query + 1));
    add("METHOD", "POST");
    add("VERSION", "HTTP/1.1");
    add("host", "localhost");
    add("content-type", "application/json");
    add("content-length", std::to_string(r.body.size()));
    auto t = std::make_unique<Transaction>(loop_, gateway_, settings_, *this, std::move(r));
    t->discard_own_reply();
    Transaction& notice = *t;
    notices_.push_back(std::move(t));
    log::debug("conn=", conn, " gone; telling ", config_.disconnect_path);
    admit(notice);
}

void Handler::hand_over_idle_holds(Handler& next) {
    for (auto it = conns_.begin(); it != conns_.end();) {
        Connection& c = it->second;
        if (c.held && c.queue.empty() && !c.held->delivering && !send_waiting_.contains(it->first) &&
            !next.conns_.count(it->first)) {
            next.conns_.emplace(it->first, std::move(c));
            ++next.held_count_;
            --held_count_;
            it = conns_.erase(it);
        } else {
            ++it;
        }
    }
    next.json_sockets_.merge(json_sockets_);
    check_shutdown();
}

void Handler::end_notice(Transaction& t) {
    in_flight_.erase(&t);
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), &t), waiting_.end());
    auto pos = std::find_if(notices_.begin(), notices_.end(), [&](const auto& p) { return p.get() == &t; });
    if (pos != notices_.end()) {
        dispose(std::move(*pos));
        notices_.erase(pos);
    }
    if (!waiting_.empty()) schedule_admissions();
    check_shutdown();
}

// --- sending, pacing, credits -------------------------------------------------

size_t Handler::send_window(uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return SIZE_MAX;
    if (queue_full()) {
        send_waiting_.add(conn);
        return 0;
    }
    Connection& c = it->second;
    if (c.window > 0) {
        uint32_t limit = c.usable_window();
        return c.outstanding >= limit ? 0 : static_cast<size_t>(limit - c.outstanding);
    }
    auto now = Loop::now();
    double earned = std::chrono::duration<double>(now - c.refilled) / config_.pacing_interval;
    c.tokens = static_cast<float>(std::min(config_.pacing_burst, c.tokens + earned));
    c.refilled = now;
    if (c.tokens >= 1) return SIZE_MAX;
    send_waiting_.add(conn);
    if (!pacing_timer_) pacing_timer_ = loop_.after(config_.pacing_interval, [this] {
        pacing_timer_ = 0;
        wake_waiting_senders();
    });
    return 0;
}

// True while too much is queued for Mongrel2; the first call arranges the
// wake-up of everything that waits on it once half is.
bool Handler::queue_full() {
    if (link_.queued_bytes() <= kQueuedBytesHigh) return false;
    if (!queue_waiting_) {
        queue_waiting_ = true;
        std::weak_ptr<const char> alive = alive_;
        link_.when_queued_below(kQueuedBytesHigh / 2, [this, alive] {
            if (!alive.lock()) return;
            queue_waiting_ = false;
            // A fan-out first: woken replies would otherwise fill the room again before it ran.
            if (!deliveries_.empty()) run_deliveries();
            wake_waiting_senders();
        });
    }
    return true;
}

// Under download credits, the window: a message goes out whole when Mongrel2
// has written the one before (half the window would mean twice the messages
// and credit notices, which cost more than the copy they save).
size_t Handler::frame_limit(uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end() || it->second.window == 0) return SIZE_MAX;
    return it->second.usable_window();
}

void Handler::send_to(const std::string& sender, uint64_t conn, std::string_view bytes) {
    link_.send(reply_envelope(sender, conn), bytes);
    count_sent(conn, bytes.size());
}

void Handler::send_to(const std::string& sender, uint64_t conn, OutFrame frame) {
    size_t size = frame.size();
    link_.send(reply_envelope(sender, conn), std::move(frame));
    count_sent(conn, size);
}

void Handler::count_sent(uint64_t conn, size_t bytes) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    if (it->second.window > 0)
        it->second.outstanding = static_cast<uint32_t>(std::min<uint64_t>(UINT32_MAX, it->second.outstanding + uint64_t{bytes}));
    else
        it->second.tokens -= 1;
}

void Handler::wake_waiting_senders() {
    SendWaiting waiting = std::move(send_waiting_);
    send_waiting_ = SendWaiting{};
    for (uint64_t conn : waiting.order) {
        if (!waiting.members.erase(conn)) continue;
        auto it = conns_.find(conn);
        if (it == conns_.end()) continue;
        if (!it->second.queue.empty())
            it->second.queue.front()->writable();
        else
            maybe_forget(conn);
    }
}

// A reply that waits for the queue to Mongrel2 to drain is not a client that stopped
// reading: its stall clock does not run meanwhile.
bool Handler::waits_on_server(uint64_t conn) { return queue_waiting_ && send_waiting_.contains(conn); }

void Handler::abandon(Transaction& t) {
    if (t.discards_own_reply()) {  // its client is gone already: nothing to close
        t.cancel();
        end_notice(t);
        return;
    }
    // `ctl cancel` closes at once; an empty reply would wait behind unread bytes.
    uint64_t ids[] = {t.conn_id()};
    for (const auto& m : encode_cancel(t.sender(), ids)) link_.send(m);
    drop_connection(t.conn_id(), "connection closed");
}

// --- long-poll and deliver ------------------------------------------------------

void Handler::hold(Transaction& t) {
    uint64_t conn = t.conn_id();
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    if (it->second.held) return;
    const std::string* sender = interned_sender(t.sender());
    if (held_count_ >= kMaxHeld || !sender) {
        log::warn("conn=", conn, sender ? " too many held connections" : " too many Mongrel2 servers", "; closing this one");
        link_.send(encode_reply(t.sender(), conn, ""));
        return;
    }
    it->second.held = Held{sender, t.reply_context()};
    ++held_count_;
}

// A sender is a Mongrel2 server's UUID: the table holds one string per server
// this process has heard from, and outlives every handler (held connections
// move to the next handler on a reload). Null past kMaxSenders of them.
const std::string* Handler::interned_sender(const std::string& sender) {
    static std::unordered_set<std::string> senders;
    auto it = senders.find(sender);
    if (it != senders.end()) return &*it;
    if (senders.size() >= kMaxSenders) return nullptr;
    return &*senders.insert(sender).first;
}

void Handler::release_hold(uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end() || !it->second.held) return;
    it->second.held.reset();
    --held_count_;
    // Requests pipelined behind the long-poll go after its delivery.
    if (!it->second.queue.empty()) {
        ready_.push_back(conn);
        schedule_admissions();
    }
    maybe_forget(conn);
}

void Handler::deliver(Transaction& t, std::span<const uint64_t> ids, std::string full, std::string head_only) {
    Delivery d;
    d.sender = t.sender();
    d.full = std::make_shared<const std::string>(std::move(full));
    d.head_only = std::make_shared<const std::string>(std::move(head_only));
    bool raw = t.request().kind == MessageKind::JsonSocket;
    std::unordered_set<uint64_t> seen;
    std::vector<uint64_t> skipped;
    for (uint64_t id : ids) {
        if (!seen.insert(id).second) continue;  // named twice: sent once
        std::optional<ReplyContext> ctx;
        if (id == t.conn_id()) {
            ctx = t.reply_context();
        } else if (auto it = conns_.find(id); it != conns_.end()) {
            Connection& c = it->second;
            if (c.held && !c.held->delivering) {
                c.held->delivering = true;
                ctx = c.held->ctx;
            } else if (!c.queue.empty() || c.held) {
                // Its own response is in progress or due (an earlier delivery that is still
                // going out names it): a reply now would land inside it or before it.
                skipped.push_back(id);
                continue;
            }
        }
        // Anything else is idle or unknown: it gets the reply unasked, as with Mongrel2's own deliver.
        bool head = !raw && ctx && ctx->head_request;
        // The requester goes first, so its copy leaves before its next pipelined request starts.
        auto& list = head ? d.head_ids : d.full_ids;
        if (id == t.conn_id())
            list.insert(list.begin(), id);
        else
            list.push_back(id);
        if (!raw && ctx && ctx->client_wants_close) d.close_after.insert(id);
    }
    if (!skipped.empty()) {
        std::string list;
        for (size_t i = 0; i < skipped.size() && i < 20; ++i) list += " " + std::to_string(skipped[i]);
        log::warn("conn=", t.conn_id(), " deliver skipped ", skipped.size(),
                  " connection(s) whose own response is in progress:", list, skipped.size() > 20 ? " ..." : "");
    }
    // First batch now: the requester's copy must leave before its next request.
    if (send_delivery_batch(d)) return;
    deliveries_.push_back(std::move(d));
    schedule_deliveries();
}

// Sends one message (≤128 ids) of a delivery; true when the delivery is complete.
bool Handler::send_delivery_batch(Delivery& d) {
    size_t total = d.full_ids.size() + d.head_ids.size();
    if (d.next >= total) return true;
    bool in_full = d.next < d.full_ids.size();
    const auto& list = in_full ? d.full_ids : d.head_ids;
    size_t offset = in_full ? d.next : d.next - d.full_ids.size();
    size_t n = std::min(kMaxIdsPerMessage, list.size() - offset);
    std::span<const uint64_t> batch(list.data() + offset, n);
    link_.send(reply_envelope_to(d.sender, batch), in_full ? *d.full : *d.head_only);
    std::vector<uint64_t> closing;
    for (uint64_t id : batch) {
        if (d.close_after.count(id)) closing.push_back(id);
        auto it = conns_.find(id);
        if (it != conns_.end() && it->second.held && it->second.held->delivering) release_hold(id);
    }
    if (!closing.empty()) link_.send(encode_reply_to(d.sender, closing, ""));
    d.next += n;
    return d.next >= total;
}

void Handler::schedule_deliveries() { post_once(deliveries_posted_, &Handler::run_deliveries); }

void Handler::run_deliveries() {
    deliveries_posted_ = false;
    size_t budget = kDeliveryBytesPerTurn;
    while (!deliveries_.empty()) {
        if (queue_full()) return;
        Delivery& d = deliveries_.front();
        size_t size = std::max<size_t>(1, d.next < d.full_ids.size() ? d.full->size() : d.head_only->size());
        if (size > budget && budget < kDeliveryBytesPerTurn) break;  // at least one message per turn
        budget -= std::min(budget, size);
        if (send_delivery_batch(d)) deliveries_.pop_front();
    }
    if (!deliveries_.empty())
        schedule_deliveries();
    else
        check_shutdown();
}

// --- keep-alive, logs, shutdown -----------------------------------------------------

// Refreshes Mongrel2's idle timer for connections waiting on their backend or
// held for a delivery, never for a reply that waits on the client: a client
// that stops reading must be swept. Forgets connections idle past the send timeout.
void Handler::keepalive_tick() {
    std::map<std::string, std::vector<uint64_t>> by_sender;
    std::vector<uint64_t> stale;
    auto now = Loop::now();
    for (auto& [conn, c] : conns_) {
        if (c.held) {
            if (!c.held->delivering) by_sender[*c.held->sender].push_back(conn);
            continue;
        }
        if (!c.queue.empty()) {
            auto state = c.queue.front()->state();
            if (state == Transaction::State::Waiting || state == Transaction::State::Running)
                by_sender[c.queue.front()->sender()].push_back(conn);
        } else if (!c.uploading() && now - c.last_seen > std::max(config_.send_timeout(), config_.keepalive())) {
            // Mongrel2 closed it silently (sweeper, kill, overflow). An upload in progress
            // stays: it ends with its -done or a disconnect, however long it takes.
            stale.push_back(conn);
        }
    }
    for (auto& [sender, ids] : by_sender)
        for (const auto& message : encode_keepalive(sender, ids)) link_.send(message);
    for (uint64_t conn : stale) {
        send_waiting_.erase(conn);
        conns_.erase(conn);
    }
    keepalive_timer_ = loop_.after(config_.keepalive(), [this] { keepalive_tick(); });
}

void Handler::access_log(const Transaction& t) {
    if (observer_) observer_(t.status(), t.elapsed_ms() / 1000);
    if (!access_log_) return;
    const Request& r = t.request();
    char line[256];
    std::string describe(gateway_.describe());
    std::string text = log::printable(r.header_or("REMOTE_ADDR", "-")) + " \"" + log::printable(r.header_or("METHOD", "-")) +
                       " " + log::printable(r.header_or("URI", r.path)) + " " + log::printable(r.header_or("VERSION", "-")) +
                       "\"";
    snprintf(line, sizeof line, " %d %llu %.1fms ", t.status(), static_cast<unsigned long long>(t.bytes_sent()),
             t.elapsed_ms());
    text += line;
    text += describe;
    text += " conn=" + std::to_string(r.conn_id) + (t.discards_own_reply() ? " disconnect-notice" : "") + "\n";
    access_log_->write(text);
}

void Handler::shutdown(std::function<void()> done) {
    on_drained_ = std::move(done);
    link_.stop_receiving();
    drop_stalled_replies();
    check_shutdown();
}

void Handler::check_shutdown() {
    // A fan-out still going out (or waiting on the queue to Mongrel2) is part of a reply.
    if (!on_drained_ || !notices_.empty() || !deliveries_.empty()) return;
    for (const auto& [id, c] : conns_)
        if (!c.queue.empty()) return;
    if (shutdown_timer_) loop_.cancel(shutdown_timer_);
    shutdown_timer_ = 0;
    auto done = std::move(on_drained_);
    on_drained_ = nullptr;
    drained_ = true;
    done();
}

// While stopping, backends get the grace time to finish, but a client that has
// taken nothing for a second does not hold the stop: its reply is given up.
void Handler::drop_stalled_replies() {
    shutdown_timer_ = 0;
    std::vector<Transaction*> stalled;
    for (auto& [id, c] : conns_)
        if (!c.queue.empty() && c.queue.front()->stalled_for() > std::chrono::seconds(1))
            stalled.push_back(c.queue.front().get());
    for (Transaction* t : stalled) {
        log::warn("conn=", t->conn_id(), " stopping: client takes no bytes; closing its connection");
        abandon(*t);
    }
    if (on_drained_) shutdown_timer_ = loop_.after(std::chrono::milliseconds(250), [this] { drop_stalled_replies(); });
}

}  // namespace m2b
