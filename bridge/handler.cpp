#include "bridge/handler.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge/log.h"
#include "bridge/m2_reply.h"
#include "bridge/upload.h"

namespace m2b {

namespace {
constexpr size_t kMaxHeld = 100000;
}

Handler::Handler(Loop& loop, const HandlerConfig& config, Gateway& gateway)
    : loop_(loop), config_(config), gateway_(gateway),
      sockets_(loop, config.send_spec, config.recv_spec, [this](std::string_view m) { on_message(m); }) {
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
    reopen_logs();
    keepalive_timer_ = loop_.after(config_.keepalive(), [this] { keepalive_tick(); });
}

Handler::~Handler() {
    loop_.cancel(keepalive_timer_);
    if (access_log_ && access_log_ != stdout) fclose(access_log_);
}

void Handler::reopen_logs() {
    if (config_.access_log.empty()) return;
    if (config_.access_log == "-") {
        access_log_ = stdout;
        return;
    }
    FILE* f = fopen(config_.access_log.c_str(), "ae");
    if (!f) {
        log::error("cannot open access log ", config_.access_log, ": ", strerror(errno));
        return;
    }
    if (access_log_ && access_log_ != stdout) fclose(access_log_);
    access_log_ = f;
}

void Handler::send(std::string_view message) { sockets_.send(message); }

void Handler::on_message(std::string_view message) {
    auto parsed = parse_m2_message(message);
    if (auto* error = std::get_if<ParseError>(&parsed)) {
        log::warn("dropped a malformed message from Mongrel2 (", error->what, "): ", log::printable(message, 120));
        return;
    }
    Request request = std::move(std::get<Request>(parsed));
    switch (request.kind) {
        case MessageKind::Disconnect:
            on_disconnect(request.conn_id);
            return;
        case MessageKind::Credits: {
            auto flow = flow_.find(request.conn_id);
            if (flow == flow_.end()) return;
            flow->second.outstanding -= std::min(flow->second.outstanding, request.credits);
            auto it = by_conn_.find(request.conn_id);
            if (it != by_conn_.end() && !it->second.empty()) it->second.front()->on_credits();
            return;
        }
        case MessageKind::WebSocket:
            if (request.header_or("METHOD", "") == "WEBSOCKET_HANDSHAKE") {
                log::warn("conn=", request.conn_id, " websocket handshake refused: not supported");
                send(encode_reply(request.sender, request.conn_id,
                                  "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
                send(encode_reply(request.sender, request.conn_id, ""));
            }
            return;
        case MessageKind::Other:
            log::debug("conn=", request.conn_id, " ignored message with path ", log::printable(request.path));
            return;
        case MessageKind::Http:
        case MessageKind::JsonSocket:
            on_request(std::move(request));
            return;
    }
}

void Handler::on_request(Request request) {
    uint64_t conn = request.conn_id;
    if (const std::string* credits = request.header("DOWNLOAD_CREDITS")) {
        // The first request of a flow-controlled connection names its window.
        uint64_t window = std::strtoull(credits->c_str(), nullptr, 10);
        if (window > 0 && !flow_.count(conn)) flow_[conn] = Flow{window, 0};
    }
    UploadCheck upload = check_upload(request, config_.upload_store);
    int upload_fd = -1;
    uint64_t upload_length = 0;
    switch (upload.state) {
        case UploadCheck::State::None:
            break;
        case UploadCheck::State::Started:
            log::debug("conn=", conn, " upload started; waiting for it to finish");
            return;
        case UploadCheck::State::Forged:
            log::warn("conn=", conn, " ignored forged upload header: ", upload.why);
            break;
        case UploadCheck::State::Refused:
            break;
        case UploadCheck::State::Done: {
            upload_fd = open(upload.file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            struct stat st {};
            if (upload_fd < 0 || fstat(upload_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                log::error("conn=", conn, " cannot open upload ", upload.file, ": ", strerror(errno));
                if (upload_fd >= 0) close(upload_fd);
                upload_fd = -1;
                upload.state = UploadCheck::State::Refused;
                upload.why = "upload file missing";
            } else {
                upload_length = static_cast<uint64_t>(st.st_size);
            }
            break;
        }
    }
    auto owned = std::make_unique<Transaction>(loop_, gateway_, settings_, *this, std::move(request));
    Transaction& t = *owned;
    if (upload_fd >= 0) t.attach_upload(upload_fd, upload_length, upload.file);
    if (upload.state == UploadCheck::State::Refused) t.refuse_when_started(413, upload.why);
    auto& queue = by_conn_[conn];
    queue.push_back(std::move(owned));
    if (queue.size() == 1) admit(t);
}

void Handler::admit(Transaction& t) {
    if (holding_slot_.size() < config_.max_requests) {
        holding_slot_.insert(&t);
        t.start();
    } else if (waiting_.size() < config_.queue) {
        waiting_.push_back(&t);
    } else {
        t.reject(503, "queue full (" + std::to_string(config_.queue) + " waiting)");
    }
}

void Handler::start_waiting() {
    while (holding_slot_.size() < config_.max_requests && !waiting_.empty()) {
        Transaction* t = waiting_.front();
        waiting_.pop_front();
        holding_slot_.insert(t);
        t->start();
    }
}

void Handler::finished(Transaction& t) {
    holding_slot_.erase(&t);
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), &t), waiting_.end());
    uint64_t conn = t.conn_id();
    auto it = by_conn_.find(conn);
    if (it != by_conn_.end()) {
        auto& queue = it->second;
        auto pos = std::find_if(queue.begin(), queue.end(), [&](const auto& p) { return p.get() == &t; });
        if (pos != queue.end()) {
            // We are inside a callback of `t`: destroy it on the next turn.
            loop_.post([dead = std::shared_ptr<Transaction>(std::move(*pos))] {});
            queue.erase(pos);
        }
        if (queue.empty())
            by_conn_.erase(it);
        else
            admit(*queue.front());  // the next pipelined request on this connection
    }
    start_waiting();
    check_shutdown();
}

size_t Handler::send_window(uint64_t conn) {
    auto it = flow_.find(conn);
    if (it == flow_.end()) return SIZE_MAX;
    // Mongrel2 closes a connection whose queued bytes pass the window: stay a little under it.
    uint64_t limit = it->second.window - std::min<uint64_t>(it->second.window, 1024);
    return it->second.outstanding >= limit ? 0 : static_cast<size_t>(limit - it->second.outstanding);
}

void Handler::sent_bytes(uint64_t conn, size_t bytes) {
    auto it = flow_.find(conn);
    if (it != flow_.end()) it->second.outstanding += bytes;
}

void Handler::on_disconnect(uint64_t conn) {
    held_.erase(conn);
    flow_.erase(conn);
    auto it = by_conn_.find(conn);
    if (it == by_conn_.end()) return;
    auto queue = std::move(it->second);
    by_conn_.erase(it);
    for (auto& t : queue) {
        holding_slot_.erase(t.get());
        waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), t.get()), waiting_.end());
        if (!t->done()) log::info("conn=", conn, " client went away; request cancelled");
        t->cancel();
        loop_.post([dead = std::shared_ptr<Transaction>(std::move(t))] {});
    }
    start_waiting();
    check_shutdown();
}

void Handler::hold(const std::string& sender, uint64_t conn, const ReplyContext& ctx) {
    if (held_.size() >= kMaxHeld && !held_.count(conn)) {
        log::warn("conn=", conn, " too many held connections; closing this one");
        send(encode_reply(sender, conn, ""));
        return;
    }
    held_[conn] = Held{sender, ctx};
}

void Handler::deliver(const std::string& sender, std::span<const uint64_t> ids, std::string_view bytes) {
    for (const auto& message : encode_reply_many(sender, ids, bytes)) send(message);
    for (uint64_t id : ids) {
        auto it = held_.find(id);
        if (it == held_.end()) continue;
        if (it->second.ctx.client_wants_close) send(encode_reply(it->second.sender, id, ""));
        held_.erase(it);
    }
}

void Handler::keepalive_tick() {
    std::map<std::string, std::vector<uint64_t>> by_sender;
    for (auto& [conn, queue] : by_conn_)
        if (!queue.empty()) by_sender[queue.front()->sender()].push_back(conn);
    for (auto& [conn, held] : held_) by_sender[held.sender].push_back(conn);
    for (auto& [sender, ids] : by_sender)
        for (const auto& message : encode_keepalive(sender, ids)) send(message);
    keepalive_timer_ = loop_.after(config_.keepalive(), [this] { keepalive_tick(); });
}

void Handler::access_log(const Transaction& t) {
    if (!access_log_) return;
    const Request& r = t.request();
    fprintf(access_log_, "%s \"%s %s %s\" %d %llu %.1fms %.*s conn=%llu\n", log::printable(r.header_or("REMOTE_ADDR", "-")).c_str(),
            log::printable(r.header_or("METHOD", "-")).c_str(), log::printable(r.header_or("URI", r.path)).c_str(),
            log::printable(r.header_or("VERSION", "-")).c_str(), t.status(),
            static_cast<unsigned long long>(t.bytes_sent()), t.elapsed_ms(),
            static_cast<int>(gateway_.describe().size()), gateway_.describe().data(),
            static_cast<unsigned long long>(r.conn_id));
    fflush(access_log_);
}

void Handler::shutdown(std::function<void()> done) {
    on_drained_ = std::move(done);
    sockets_.stop_receiving();
    check_shutdown();
}

void Handler::check_shutdown() {
    if (on_drained_ && by_conn_.empty()) {  // empty queues are erased at once
        auto done = std::move(on_drained_);
        on_drained_ = nullptr;
        done();
    }
}

}  // namespace m2b
