#include "bridge/transaction.h"

#include <algorithm>
#include <unistd.h>

#include "bridge/log.h"
#include "bridge/m2_reply.h"

namespace m2b {

namespace {

// A reply whose whole body arrives within kFlushDelay and is at most
// kWholeBodyLimit goes out as one message with Content-Length. Otherwise it
// streams in messages of up to kMessageTarget, at most one per kMinInterval:
// Mongrel2 closes a connection with more than 16 messages queued.
constexpr size_t kWholeBodyLimit = 1024 * 1024;
constexpr size_t kMessageTarget = 1024 * 1024;
constexpr auto kFlushDelay = std::chrono::milliseconds(20);
constexpr auto kMinInterval = std::chrono::milliseconds(10);
constexpr size_t kMaxDeliverBody = 1024 * 1024;
constexpr int kMaxLocalRedirects = 5;
constexpr size_t kMaxStderrLogged = 16 * 1024;

int status_for(BackendFailure failure) {
    switch (failure) {
        case BackendFailure::Timeout: return 504;
        case BackendFailure::Overloaded: return 503;
        case BackendFailure::Unavailable:
        case BackendFailure::BadResponse: return 502;
    }
    return 502;
}

void set_header(HeaderList& headers, std::string_view name, std::string value) {
    for (auto& h : headers)
        if (h.name == name) {
            h.values = {std::move(value)};
            return;
        }
    headers.push_back(Header{std::string(name), {std::move(value)}});
}

void remove_header(HeaderList& headers, std::string_view name) {
    headers.erase(std::remove_if(headers.begin(), headers.end(), [&](const Header& h) { return h.name == name; }),
                  headers.end());
}

}  // namespace

Transaction::Transaction(Loop& loop, Gateway& gateway, const TransactionSettings& settings, TransactionOwner& owner,
                         Request request)
    : loop_(loop), gateway_(gateway), settings_(settings), owner_(owner), request_(std::move(request)) {
    raw_ = request_.kind == MessageKind::JsonSocket;
    reply_ctx_ = reply_context(request_.header_or("VERSION", "HTTP/1.1"), request_.header_or("METHOD", "GET"),
                               request_.header_or("connection", ""));
}

Transaction::~Transaction() {
    cancel_timers();
    drop_upload();
}

void Transaction::attach_upload(int fd, uint64_t length, std::string path) {
    upload_fd_ = fd;
    upload_length_ = length;
    upload_path_ = std::move(path);
}

double Transaction::elapsed_ms() const {
    return std::chrono::duration<double, std::milli>(Loop::now() - started_at_).count();
}

std::string Transaction::log_prefix() const { return "conn=" + std::to_string(request_.conn_id) + " "; }

void Transaction::start() {
    if (refusal_status_ != 0) {
        reject(refusal_status_, refusal_why_);
        return;
    }
    state_ = State::Running;
    ScriptTarget target = resolve_script(settings_.script, request_.header_or("PATTERN", ""), request_.path);
    if (raw_ && target.status == 0 && !settings_.script.directory.empty()) target.status = 404;
    if (target.status != 0) {
        log::info(log_prefix(), "refused ", request_.path, ": ", target.error);
        reply_error(target.status);
        finish();
        return;
    }
    std::optional<uint64_t> content_length;
    if (upload_fd_ >= 0) {
        body_ = BodySource{{}, upload_fd_, upload_length_};
        content_length = upload_length_;
    } else {
        body_ = BodySource{request_.body, -1, 0};
        if (!request_.body.empty() || request_.header("content-length") || raw_) content_length = request_.body.size();
    }
    env_ = build_cgi_env(request_, target, settings_.env, content_length);
    if (settings_.allow_nph && !raw_) {
        const std::string& script = target.script_filename.empty() ? settings_.env.script_filename : target.script_filename;
        std::string_view name = std::string_view(script).substr(script.rfind('/') + 1);
        if (name.starts_with("nph-")) {
            // Non-parsed headers (RFC 3875 §5): bytes pass as they come and the connection closes after.
            nph_ = true;
            head_parsed_ = true;
            head_sent_ = true;
            framing_ = Framing::CloseDelimited;
            status_ = 200;
        }
    }
    exchange_ = gateway_.start(env_, body_, request_.conn_id, *this);
}

void Transaction::reject(int status, std::string_view why) {
    state_ = State::Running;
    log::warn(log_prefix(), why);
    std::vector<std::pair<std::string, std::string>> extra;
    if (status == 503) extra.emplace_back("Retry-After", "1");
    reply_error(status, std::move(extra));
    finish();
}

void Transaction::cancel() {
    if (state_ == State::Done) return;
    state_ = State::Done;
    cancel_timers();
    drop_exchange();
    drop_upload();
}

void Transaction::on_stdout(std::string_view bytes) {
    if (state_ != State::Running) return;
    if (!head_parsed_) {
        auto result = parser_.feed(bytes);
        if (result == CgiHeadParser::State::NeedMore) return;
        if (result == CgiHeadParser::State::Error) {
            log::error(log_prefix(), "malformed response from ", gateway_.describe(), ": ", parser_.error());
            drop_exchange();
            reply_error(502);
            finish();
            return;
        }
        head_parsed_ = true;
        handle_head();
        if (state_ != State::Running || !head_parsed_) return;  // finished, or redirected
        bytes = parser_.leftover_body();
    }
    if (bytes.empty()) return;
    body_seen_ += bytes.size();
    if (discard_body_) return;
    if (delivering_) {
        if (deliver_body_.size() + bytes.size() > kMaxDeliverBody) {
            log::error(log_prefix(), "X-Mongrel2-Deliver body larger than ", kMaxDeliverBody, " bytes");
            drop_exchange();
            reply_error(502);
            finish();
            return;
        }
        deliver_body_ += bytes;
        return;
    }
    pending_ += bytes;
    schedule_output();
}

void Transaction::on_stderr(std::string_view bytes) {
    if (stderr_logged_ >= kMaxStderrLogged) return;
    size_t start = 0;
    while (start < bytes.size() && stderr_logged_ < kMaxStderrLogged) {
        size_t nl = bytes.find('\n', start);
        std::string_view line = bytes.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
        if (!line.empty()) log::warn(log_prefix(), "backend stderr: ", log::printable(line, 500));
        stderr_logged_ += line.size() + 1;
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }
    if (stderr_logged_ >= kMaxStderrLogged) log::warn(log_prefix(), "backend stderr: further output not logged");
}

void Transaction::handle_head() {
    ResponseHead& head = parser_.head();
    if (head.kind == ResponseKind::LocalRedirect) {
        local_redirect();
        return;
    }
    status_ = head.status;
    if (head.deliver) {
        delivering_ = true;
        return;
    }
    discard_body_ = !raw_ && (reply_ctx_.head_request || status_has_no_body(head.status));
}

void Transaction::local_redirect() {
    if (++redirects_ > kMaxLocalRedirects) {
        log::error(log_prefix(), "more than ", kMaxLocalRedirects, " local redirects");
        drop_exchange();
        reply_error(502);
        finish();
        return;
    }
    std::string location = *parser_.head().location;
    drop_exchange();
    drop_upload();
    // RFC 3875 §6.2.2: the server serves the new path itself, as a GET without a body.
    size_t q = location.find('?');
    std::string path = location.substr(0, q);
    request_.path = path;
    set_header(request_.headers, "PATH", path);
    set_header(request_.headers, "URI", location);
    if (q == std::string::npos)
        remove_header(request_.headers, "QUERY");
    else
        set_header(request_.headers, "QUERY", location.substr(q + 1));
    if (!reply_ctx_.head_request) set_header(request_.headers, "METHOD", "GET");
    remove_header(request_.headers, "content-length");
    remove_header(request_.headers, "content-type");
    remove_header(request_.headers, "transfer-encoding");
    request_.body.clear();
    parser_ = CgiHeadParser();
    head_parsed_ = false;
    body_seen_ = 0;
    start();
}

void Transaction::schedule_output() {
    if (!head_sent_) {
        if (pending_.size() >= kWholeBodyLimit)
            start_streaming();
        else if (!flush_timer_)
            flush_timer_ = loop_.after(kFlushDelay, [this] {
                flush_timer_ = 0;
                start_streaming();
            });
        return;
    }
    if (flush_timer_) return;  // a send is already scheduled
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(last_send_ + kMinInterval - Loop::now());
    if (pending_.size() >= kMessageTarget) {
        if (wait.count() <= 0) {
            send_pending(false);
            return;
        }
        // Hold the backend until this message can go.
        if (exchange_ && !paused_) {
            paused_ = true;
            if (!paused_for_outbox_) exchange_->set_paused(true);
        }
    }
    flush_timer_ = loop_.after(std::max(wait, kFlushDelay), [this] {
        flush_timer_ = 0;
        send_pending(false);
    });
}

void Transaction::start_streaming() {
    if (head_sent_ || state_ != State::Running) return;
    const ResponseHead& head = parser_.head();
    if (raw_) {
        framing_ = Framing::CloseDelimited;  // raw bytes; the JSON socket stays open
    } else if (head.content_length) {
        framing_ = Framing::ContentLength;
    } else {
        framing_ = choose_framing(reply_ctx_, head.status, -1);
    }
    std::string out;
    if (!raw_) {
        ReplyHead reply{head.status, head.reason, head.headers};
        out = build_head(reply, reply_ctx_, framing_, head.content_length.value_or(0), std::time(nullptr));
    }
    head_sent_ = true;
    frame_pending(out, false);
    send_message(out);
}

// Appends the pending body bytes to `out` in the reply's framing: a chunk
// (and the last chunk when `final`), or the bytes themselves, cut at the
// app's Content-Length.
void Transaction::frame_pending(std::string& out, bool final) {
    if (framing_ == Framing::Chunked) {
        append_chunk(out, pending_);
        if (final) out += kLastChunk;
    } else if (framing_ != Framing::None) {
        if (framing_ == Framing::ContentLength) {
            uint64_t room = *parser_.head().content_length - body_framed_;
            if (pending_.size() > room) {
                overflowed_ = true;
                pending_.resize(room);
            }
        }
        body_framed_ += pending_.size();
        out += pending_;
    }
    pending_.clear();
}

void Transaction::send_pending(bool final) {
    if (state_ != State::Running) return;
    if (!head_sent_) {
        start_streaming();
        if (!final) return;
    }
    std::string out;
    frame_pending(out, final);
    if (!out.empty()) send_message(out);
    if (paused_) {
        paused_ = false;
        if (exchange_ && !paused_for_outbox_) exchange_->set_paused(false);
    }
}

void Transaction::send_message(std::string_view bytes) {
    outbox_ += bytes;
    bytes_sent_ += bytes.size();
    last_send_ = Loop::now();
    pump();
}

void Transaction::close_client() {
    close_pending_ = true;
    pump();
}

// Hands the outbox to Mongrel2: all of it in one message, or, with download
// flow control, as much as the connection's window allows.
void Transaction::pump() {
    while (!outbox_.empty()) {
        size_t n = std::min(outbox_.size(), owner_.send_window(request_.conn_id));
        if (n == 0) break;
        owner_.send(encode_reply(request_.sender, request_.conn_id, std::string_view(outbox_).substr(0, n)));
        owner_.sent_bytes(request_.conn_id, n);
        outbox_.erase(0, n);
    }
    if (!outbox_.empty()) {
        // Waiting for credits: stop reading the backend once a message's worth is queued.
        if (!paused_for_outbox_ && outbox_.size() >= kMessageTarget && exchange_) {
            paused_for_outbox_ = true;
            if (!paused_) exchange_->set_paused(true);
        }
        return;
    }
    if (paused_for_outbox_) {
        paused_for_outbox_ = false;
        if (exchange_ && !paused_) exchange_->set_paused(false);
    }
    if (close_pending_) {
        close_pending_ = false;
        owner_.send(encode_reply(request_.sender, request_.conn_id, ""));
    }
    if (state_ == State::Draining) {
        state_ = State::Done;
        owner_.access_log(*this);
        owner_.finished(*this);
    }
}

void Transaction::on_credits() {
    if (state_ == State::Running || state_ == State::Draining) pump();
}

void Transaction::on_complete() {
    if (state_ != State::Running) return;
    if (!head_parsed_) {
        log::error(log_prefix(), gateway_.describe(), " ended without a complete response head");
        drop_exchange();
        reply_error(502);
        finish();
        return;
    }
    drop_exchange();
    if (delivering_)
        deliver_reply();
    else if (head_sent_)
        finish_stream();
    else
        finish_whole_body();
    finish();
}

void Transaction::finish_whole_body() {
    cancel_timers();
    const ResponseHead& head = parser_.head();
    if (raw_) {
        if (!pending_.empty()) send_message(pending_);
        return;
    }
    uint64_t length = discard_body_ ? head.content_length.value_or(body_seen_) : pending_.size();
    if (head.content_length && !discard_body_) {
        if (length < *head.content_length) {
            log::error(log_prefix(), "body shorter (", length, ") than the app's Content-Length ", *head.content_length);
            reply_error(502);
            return;
        }
        if (length > *head.content_length) {
            log::warn(log_prefix(), "body longer than the app's Content-Length; cut to ", *head.content_length);
            pending_.resize(*head.content_length);
            length = pending_.size();
        }
    }
    framing_ = choose_framing(reply_ctx_, head.status, static_cast<int64_t>(length));
    ReplyHead reply{head.status, head.reason, head.headers};
    std::string out = build_head(reply, reply_ctx_, framing_, length, std::time(nullptr));
    if (!discard_body_ && framing_ != Framing::None) out += pending_;
    pending_.clear();
    send_message(out);
    if (must_close(reply_ctx_, framing_)) close_client();
}

void Transaction::finish_stream() {
    cancel_timers();
    send_pending(true);
    bool abort = false;
    if (framing_ == Framing::ContentLength && body_framed_ < *parser_.head().content_length) {
        log::error(log_prefix(), "body shorter than the app's Content-Length: closing the connection");
        abort = true;
    }
    if (overflowed_) log::warn(log_prefix(), "body longer than the app's Content-Length: cut and closed");
    if (raw_) return;
    if (abort || overflowed_ || must_close(reply_ctx_, framing_)) close_client();
}

void Transaction::deliver_reply() {
    const ResponseHead& head = parser_.head();
    const std::vector<uint64_t>& ids = *head.deliver;
    std::string bytes;
    if (raw_) {
        bytes = std::move(deliver_body_);
    } else {
        // Recipients may be other clients: frame for any HTTP/1.x reader and keep them open.
        ReplyContext any;
        ReplyHead reply{head.status, head.reason, head.headers};
        Framing framing = choose_framing(any, head.status, static_cast<int64_t>(deliver_body_.size()));
        bytes = build_head(reply, any, framing, deliver_body_.size(), std::time(nullptr));
        if (framing != Framing::None) bytes += deliver_body_;
    }
    if (!ids.empty()) owner_.deliver(request_.sender, ids, bytes);
    bytes_sent_ += bytes.size() * ids.size();
    bool requester_listed = std::find(ids.begin(), ids.end(), request_.conn_id) != ids.end();
    if (!requester_listed)
        owner_.hold(request_.sender, request_.conn_id, reply_ctx_);
    else if (!raw_ && reply_ctx_.client_wants_close)
        close_client();
}

void Transaction::on_failure(BackendFailure failure, std::string_view why) {
    if (state_ != State::Running) return;
    drop_exchange();
    log::error(log_prefix(), gateway_.describe(), ": ", why);
    if (head_sent_ && !(nph_ && bytes_sent_ == 0)) {
        // Too late for an error status: pass on what arrived, then end the
        // connection so the client sees a short body.
        cancel_timers();
        send_pending(false);
        close_client();
    } else {
        std::vector<std::pair<std::string, std::string>> extra;
        if (failure == BackendFailure::Overloaded) extra.emplace_back("Retry-After", "1");
        reply_error(status_for(failure), std::move(extra));
    }
    finish();
}

void Transaction::reply_error(int status, std::vector<std::pair<std::string, std::string>> extra) {
    cancel_timers();
    status_ = status;
    pending_.clear();
    if (raw_) return;  // a JSON socket has no status line to carry it
    send_message(build_error_reply(status, reply_ctx_, std::time(nullptr), std::move(extra)));
    if (reply_ctx_.client_wants_close) close_client();
}

void Transaction::finish() {
    if (state_ == State::Done || state_ == State::Draining) return;
    cancel_timers();
    drop_exchange();
    drop_upload();
    if (!outbox_.empty() || close_pending_) {
        state_ = State::Draining;  // pump() finishes once Mongrel2 has taken it all
        return;
    }
    state_ = State::Done;
    owner_.access_log(*this);
    owner_.finished(*this);
}

void Transaction::drop_exchange() {
    if (!exchange_) return;
    exchange_->cancel();
    // We may be inside one of its callbacks: destroy it on the next turn.
    loop_.post([dead = std::shared_ptr<Exchange>(std::move(exchange_))] {});
}

void Transaction::drop_upload() {
    if (upload_fd_ < 0) return;
    close(upload_fd_);
    upload_fd_ = -1;
    // Mongrel2 never deletes a finished upload; the handler does.
    if (unlink(upload_path_.c_str()) != 0) log::warn(log_prefix(), "could not delete upload ", upload_path_);
}

void Transaction::cancel_timers() {
    if (flush_timer_) loop_.cancel(flush_timer_);
    flush_timer_ = 0;
}

}  // namespace m2b
