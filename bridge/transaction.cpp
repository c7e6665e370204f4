#include "bridge/transaction.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "bridge/file_reply.h"

namespace m2b {

namespace {

constexpr size_t kMaxDeliverBody = 1024 * 1024;
constexpr int kMaxLocalRedirects = 5;
constexpr size_t kMaxStderrLogged = 16 * 1024;

int status_for(BackendFailure failure) {
    switch (failure) {
        case BackendFailure::Timeout:
        case BackendFailure::ConnectTimeout: return 504;
        case BackendFailure::Overloaded: return 503;
        case BackendFailure::Refused:
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

ReplyContext context_of(const Request& r) {
    return reply_context(r.header_or("VERSION", "HTTP/1.1"), r.header_or("METHOD", "GET"),
                         r.header_or("connection", ""));
}

}  // namespace

Transaction::Transaction(Loop& loop, Gateway& gateway, const TransactionSettings& settings, TransactionOwner& owner,
                         Request request)
    : loop_(loop), gateway_(gateway), settings_(settings), owner_(owner), request_(std::move(request)),
      reply_ctx_(context_of(request_)), raw_(request_.kind == MessageKind::JsonSocket),
      stream_(loop, *this, reply_ctx_, settings.reply) {}

Transaction::~Transaction() {
    if (deadline_timer_) loop_.cancel(deadline_timer_);
    drop_upload();
}

void Transaction::attach_upload(std::string path) { upload_path_ = std::move(path); }

void Transaction::refuse(int status, std::string why, bool close) {
    refusal_status_ = status;
    refusal_why_ = std::move(why);
    if (close) {
        reply_ctx_.client_wants_close = true;
        stream_.close_after_reply();
    }
}

double Transaction::elapsed_ms() const {
    return std::chrono::duration<double, std::milli>(Loop::now() - started_at_).count();
}

std::string Transaction::log_prefix() const { return "conn=" + std::to_string(request_.conn_id) + " "; }

void Transaction::start() {
    if (state_ != State::Queued && state_ != State::Waiting) return;
    state_ = State::Running;
    if (refusal_status_ != 0) {
        log::warn(log_prefix(), refusal_why_);
        end_with_error(refusal_status_);
        return;
    }
    if (settings_.deadline.count() > 0) deadline_timer_ = loop_.after(settings_.deadline, [this] { on_deadline(); });
    run();
}

// Resolves the script and hands the request to the backend (again after a local redirect).
void Transaction::run() {
    ScriptTarget target = resolve_script(settings_.script, request_.header_or("PATTERN", ""), request_.path);
    if (raw_ && target.status == 0 && !settings_.script.directory.empty()) target.status = 404;
    if (target.status != 0) {
        log::info(log_prefix(), "refused ", request_.path, ": ", target.error);
        end_with_error(target.status);
        return;
    }
    std::optional<uint64_t> content_length;
    if (!upload_path_.empty()) {
        if (upload_fd_ < 0 && !open_upload()) {
            end_with_error(502);
            return;
        }
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
        // Non-parsed headers (RFC 3875 §5): bytes pass as they come and the connection closes after.
        nph_ = name.starts_with("nph-");
    }
    exchange_ = gateway_.start(env_, body_, request_.conn_id, *this);
}

// The file Mongrel2 wrote: opened without blocking (a FIFO planted in the store
// must not stall the loop) and accepted only as a plain, single-link file of
// the store's owner, so nothing else on the machine can be fed to the app.
bool Transaction::open_upload() {
    int fd = open(upload_path_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st {};
    std::string why;
    if (fd < 0)
        why = strerror(errno);
    else if (fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (st.st_nlink != 1)
        why = "has other links";
    else if (st.st_uid != settings_.upload_owner)
        why = "owned by uid " + std::to_string(st.st_uid) + ", not the upload store's owner";
    if (!why.empty()) {
        log::error(log_prefix(), "refused upload ", upload_path_, ": ", why);
        if (fd >= 0) close(fd);
        upload_path_.clear();  // not ours to delete
        return false;
    }
    upload_fd_ = fd;
    upload_length_ = static_cast<uint64_t>(st.st_size);
    return true;
}

void Transaction::cancel() {
    if (state_ == State::Done) return;
    state_ = State::Done;
    if (deadline_timer_) loop_.cancel(deadline_timer_);
    deadline_timer_ = 0;
    stream_.cancel();
    drop_exchange();
    drop_upload();
}

void Transaction::on_stdout(std::string_view bytes) {
    if (state_ != State::Running) return;
    if (nph_) {
        if (!stream_.started()) {
            status_ = 200;
            stream_.begin_raw(true);
        }
        stream_.body(bytes);
        return;
    }
    if (!head_parsed_) {
        auto result = parser_.feed(bytes);
        if (result == CgiHeadParser::State::NeedMore) return;
        if (result == CgiHeadParser::State::Error) {
            log::error(log_prefix(), "malformed response from ", gateway_.describe(), ": ", parser_.error());
            end_with_error(502);
            return;
        }
        head_parsed_ = true;
        handle_head();
        if (state_ != State::Running || !head_parsed_) return;  // finished, or redirected
        bytes = parser_.leftover_body();
    }
    if (bytes.empty()) return;
    if (delivering_) {
        if (deliver_body_.size() + bytes.size() > kMaxDeliverBody) {
            log::error(log_prefix(), "X-Mongrel2-Deliver body larger than ", kMaxDeliverBody, " bytes");
            end_with_error(502);
            return;
        }
        deliver_body_ += bytes;
        return;
    }
    stream_.body(bytes);
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
    if (head.sendfile) {
        send_file();
        return;
    }
    status_ = head.status;
    if (head.deliver) {
        delivering_ = true;
        return;
    }
    if (raw_)
        stream_.begin_raw(false);  // the JSON socket stays open
    else
        stream_.begin(ReplyHead{head.status, head.reason, head.headers}, head.content_length);
}

// X-Sendfile: the app's worker is freed at once and the file goes out as the
// body, under the same flow control and buffer limit as any reply.
void Transaction::send_file() {
    const ResponseHead& head = parser_.head();
    struct stat st {};
    std::string why;
    UniqueFd fd;
    if (raw_)
        why = "not for a JSON socket";
    else if (FileBody::open_count() >= FileBody::kMaxOpen)
        why = "too many files being sent (" + std::to_string(FileBody::kMaxOpen) + ")";
    else
        fd = open_in_roots(*head.sendfile, settings_.sendfile_roots, st, why);
    if (!fd) {
        log::error(log_prefix(), "X-Sendfile ", log::printable(*head.sendfile, 300), ": ", why);
        end_with_error(FileBody::open_count() >= FileBody::kMaxOpen ? 503 : 502);
        return;
    }
    auto field = [&](std::string_view name) -> std::optional<std::string> {
        const std::string* v = request_.header(name);
        return v ? std::optional<std::string>(*v) : std::nullopt;
    };
    FilePlan plan = plan_file_reply(static_cast<uint64_t>(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec, head.status,
                                    FileConditions{reply_ctx_.head_request || request_.header_or("METHOD", "") == "GET",
                                                   field("range"), field("if-range"), field("if-none-match"),
                                                   field("if-modified-since")});
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& h : head.headers) {
        bool ours = false;
        for (std::string_view name : {"ETag", "Last-Modified", "Accept-Ranges", "Content-Range"})
            ours = ours || (h.first.size() == name.size() &&
                            std::equal(name.begin(), name.end(), h.first.begin(),
                                       [](char a, char b) { return std::tolower(a) == std::tolower(b); }));
        if (!ours) headers.push_back(h);
    }
    if (!head.has_content_type && plan.status != 304) headers.emplace_back("Content-Type", "application/octet-stream");
    headers.insert(headers.end(), plan.headers.begin(), plan.headers.end());
    release_backend();
    status_ = plan.status;
    stream_.begin(ReplyHead{plan.status, plan.status == head.status ? head.reason : "", std::move(headers)}, plan.length);
    if (plan.length == 0 || reply_ctx_.head_request) {
        stream_.end();
        finish_if_sent();
        return;
    }
    file_ = std::make_unique<FileBody>(
        loop_, std::move(fd), plan.offset, plan.length, [this](std::string_view bytes) { stream_.body(bytes); },
        [this](const std::string& error) { file_sent(error); });
}

void Transaction::file_sent(const std::string& error) {
    loop_.dispose_later(std::move(file_));  // we are inside its callback
    if (state_ != State::Replying) return;
    if (!error.empty()) {
        log::error(log_prefix(), "X-Sendfile: ", error);
        stream_.abort();  // the head promised a length: the client sees a short body
    } else {
        stream_.end();
    }
    finish_if_sent();
}

void Transaction::local_redirect() {
    if (++redirects_ > kMaxLocalRedirects) {
        log::error(log_prefix(), "more than ", kMaxLocalRedirects, " local redirects");
        end_with_error(502);
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
    run();
}

void Transaction::on_complete() {
    if (state_ != State::Running) return;
    if (!head_parsed_ && !nph_) {
        log::error(log_prefix(), gateway_.describe(), " ended without a complete response head");
        end_with_error(502);
        return;
    }
    // The backend is done before the reply leaves: its upload file is gone by
    // the time the client has the answer.
    release_backend();
    if (delivering_) {
        deliver_reply();
    } else {
        if (nph_ && !stream_.started()) stream_.begin_raw(true);  // printed nothing: just close
        stream_.end();
    }
    finish_if_sent();
}

void Transaction::deliver_reply() {
    const ResponseHead& head = parser_.head();
    std::string full, head_only;
    if (raw_) {
        full = std::move(deliver_body_);
    } else {
        // Recipients may be other clients: frame for any HTTP/1.x reader and keep them open.
        ReplyContext any;
        ReplyHead reply{head.status, head.reason, head.headers};
        Framing framing = choose_framing(any, head.status, static_cast<int64_t>(deliver_body_.size()));
        auto now = std::time(nullptr);
        head_only = build_head(reply, any, framing, deliver_body_.size(), now);
        full = head_only;
        if (framing != Framing::None) full += deliver_body_;
    }
    const std::vector<uint64_t>& ids = *head.deliver;
    bool requester_listed = std::find(ids.begin(), ids.end(), request_.conn_id) != ids.end();
    if (!ids.empty()) {
        uint64_t size = full.size();
        owner_.deliver(*this, ids, std::move(full), std::move(head_only));
        delivered_bytes_ += size;
    }
    if (!requester_listed) owner_.hold(*this);
}

void Transaction::on_failure(BackendFailure failure, std::string_view why) {
    if (state_ != State::Running) return;
    log::error(log_prefix(), gateway_.describe(), ": ", why);
    release_backend();
    if (stream_.head_sent()) {
        stream_.abort();  // too late for a status: the client sees a short body
    } else {
        status_ = status_for(failure);
        std::vector<std::pair<std::string, std::string>> extra;
        if (failure == BackendFailure::Overloaded) extra.emplace_back("Retry-After", "1");
        stream_.error(status_, std::move(extra));
    }
    finish_if_sent();
}

void Transaction::on_deadline() {
    deadline_timer_ = 0;
    if (state_ != State::Running) return;
    log::error(log_prefix(), "request deadline of ", settings_.deadline.count() / 1000.0, " s passed");
    if (!stream_.head_sent()) {
        end_with_error(504);
        return;
    }
    release_backend();
    stream_.abort();
    finish_if_sent();
}

void Transaction::reply_error(int status) {
    status_ = status;
    std::vector<std::pair<std::string, std::string>> extra;
    if (status == 503) extra.emplace_back("Retry-After", "1");
    stream_.error(status, std::move(extra));
}

void Transaction::backend_paused(bool paused) {
    if (exchange_) exchange_->set_paused(paused);
    if (file_) file_->set_paused(paused);
}

// The backend is done with this request, whatever the client does next: its
// slot, connection or process and the upload file are given back at once.
void Transaction::release_backend() {
    if (state_ != State::Running) return;
    state_ = State::Replying;
    if (deadline_timer_) loop_.cancel(deadline_timer_);
    deadline_timer_ = 0;
    drop_exchange();
    drop_upload();
    owner_.released(*this);
}

// Finishes once the reply is handed over; a reply still draining finishes from reply_flushed().
void Transaction::finish_if_sent() {
    if (state_ != State::Replying) return;
    auto s = stream_.state();
    if (s == ReplyStream::State::Idle || s == ReplyStream::State::Done) finish();
}

void Transaction::end_with_error(int status) {
    release_backend();
    reply_error(status);
    finish_if_sent();
}

void Transaction::reply_flushed() {
    if (state_ == State::Replying) finish();
}

void Transaction::reply_stalled() {
    log::warn(log_prefix(), "client took no bytes for ", settings_.reply.send_timeout.count() / 1000.0,
              " s; closing its connection");
    if (state_ == State::Running) {
        state_ = State::Replying;
        drop_exchange();
        drop_upload();
        owner_.released(*this);
    }
    status_ = status_ ? status_ : 504;
    owner_.abandon(*this);  // cancels this transaction
}

void Transaction::finish() {
    if (state_ == State::Done) return;
    state_ = State::Done;
    owner_.access_log(*this);
    owner_.finished(*this);
}

void Transaction::drop_exchange() {
    if (file_) {
        file_->cancel();
        loop_.dispose_later(std::move(file_));  // we may be inside one of its callbacks
    }
    if (!exchange_) return;
    exchange_->cancel();
    loop_.dispose_later(std::move(exchange_));  // we may be inside one of its callbacks
}

void Transaction::drop_upload() {
    if (upload_fd_ >= 0) close(upload_fd_);
    upload_fd_ = -1;
    if (upload_path_.empty()) return;
    // Mongrel2 never deletes a finished upload; the handler does.
    if (unlink(upload_path_.c_str()) != 0 && errno != ENOENT)
        log::warn(log_prefix(), "could not delete upload ", upload_path_, ": ", strerror(errno));
    upload_path_.clear();
}

}  // namespace m2b
