#include "adapters/fastcgi/client.h"

#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <unistd.h>

#include "adapters/fastcgi/pool.h"
#include "adapters/fastcgi/record.h"
#include "adapters/request_body.h"
#include "base/life_token.h"
#include "base/unique_fd.h"
#include "adapters/silence_timer.h"

namespace m2b {

namespace {

constexpr uint16_t kRequestId = 1;       // one request per connection: no multiplexing
constexpr size_t kReadChunk = 64 * 1024;
constexpr int kReadsPerWakeup = 4;       // fairness between connections
constexpr size_t kBodyChunk = 4 * fcgi::kMaxContent;
constexpr size_t kStdinEndSize = 8;  // the empty STDIN record: a header alone

}  // namespace

namespace {

class FastcgiExchange final : public Exchange, private KeptConnections::Waiter {
public:
    FastcgiExchange(FastcgiGateway& gateway, const CgiEnv& env, const BodySource& body, ExchangeSink& sink)
        : gateway_(gateway), loop_(gateway.loop()), env_(env), body_(body), sink_(sink),
          silence_(loop_, gateway.options().timeout, [this] {
              // A connect that never completed reached nothing: another backend may take the request.
              if (stage_ == Stage::Connecting)
                  fail(BackendFailure::ConnectTimeout, "connect to " + gateway_.options().address + " timed out after " +
                                                    std::to_string(silence_.timeout().count()) + " ms");
              else
                  fail(BackendFailure::Timeout,
                       "backend silent for " + std::to_string(silence_.timeout().count()) + " ms");
          }) {
        // A kept connection that fails before any reply byte may have run the
        // request already: sent again only when running it twice is harmless.
        for (const auto& [name, value] : env_)
            if (name == "REQUEST_METHOD")
                may_retry_ = value == "GET" || value == "HEAD" || value == "OPTIONS" || value == "TRACE";
    }

    ~FastcgiExchange() override {
        if (auto* pool = gateway_.kept()) pool->forget(*this);
        close_connection();
    }

    void begin() {
        silence_.start();
        params_ = fcgi::encode_params(kRequestId, env_);
        if (!params_) {
            fail_later(BackendFailure::BadResponse, "a request parameter does not fit one FastCGI record");
            return;
        }
        auto* pool = gateway_.kept();
        if (!pool) {
            int error = 0;
            int fd = gateway_.connect_new(error);
            on_connection(fd, false, error);
            return;
        }
        bool reused = false;
        int error = 0;
        int fd = pool->acquire(*this, /*fresh_only=*/!may_retry_, reused, error);
        if (fd < 0 && error == 0) return;  // Waiting: the pool calls on_connection
        on_connection(fd, reused, error);
    }

    void set_paused(bool paused) override {
        if (paused_ == paused || stage_ == Stage::Done) return;
        paused_ = paused;
        silence_.set_paused(paused);
        update_events();
    }

    void cancel() override {
        stage_ = Stage::Done;
        silence_.stop();
        if (auto* pool = gateway_.kept()) pool->forget(*this);
        close_connection();
    }

private:
    enum class Stage {
        Waiting,     // for a kept connection to come free
        Connecting,  // connect() in progress
        Exchanging,  // writing the request, reading the response
        Done,        // ended: complete, failed or cancelled
    };

    // A connection, from the pool or just made: queue BEGIN, PARAMS and the
    // body, and write what the socket takes.
    void on_connection(int fd, bool reused, int error) override {
        if (stage_ == Stage::Done) {  // cannot happen: a cancelled exchange has left the queue
            if (fd >= 0) gateway_.kept() ? gateway_.kept()->discard(fd) : (void)::close(fd);
            return;
        }
        if (fd < 0) {
            BackendFailure kind = error == EAGAIN ? BackendFailure::Overloaded : BackendFailure::Refused;
            fail_later(kind, std::string("connect to ") + gateway_.options().address + ": " + strerror(error));
            return;
        }
        fd_.reset(fd);
        reused_ = reused;
        watched_ = false;
        stage_ = !reused && error == EINPROGRESS ? Stage::Connecting : Stage::Exchanging;
        // On a fresh connection the pool checks that the backend takes the request (pool.h).
        auto* pool = gateway_.kept();
        hold_back_ = pool && pool->learning() && !reused ? kStdinEndSize : 0;
        out_.clear();
        out_pos_ = 0;
        body_reader_ = RequestBodyReader(body_, kBodyChunk);  // from the start, also on a retry
        body_done_ = false;
        write_failed_ = false;
        reader_ = fcgi::RecordReader();
        fcgi::append_begin_request(out_, kRequestId, pool != nullptr);
        out_ += *params_;
        refill_body();
        silence_.activity();
        // A Unix socket is usually connected at once: write the request now,
        // so the watch starts with the events it needs (fewer epoll_ctl calls).
        if (stage_ == Stage::Exchanging) flush();
        if (stage_ == Stage::Done || fd_.get() != fd) return;  // failed, or retried on a fresh connection
        // A kept connection is still in epoll from its last request: only the callback changes.
        bool ok = reused ? loop_.rebind(fd, [this](uint32_t events) { on_events(events); }) &&
                               loop_.set_events(fd, wanted_events())
                         : loop_.watch(fd, wanted_events(), [this](uint32_t events) { on_events(events); });
        watched_ = true;
        if (!ok) {
            int e = errno;
            close_connection();
            fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(e));
        }
    }

    // Appends the next piece of the body (STDIN records) to the output buffer.
    void refill_body() {
        if (body_done_) return;
        std::string_view piece = body_reader_.pending();
        if (!piece.empty()) {
            fcgi::append_stdin(out_, kRequestId, piece);
            body_reader_.consume(piece.size());
            if (body_.file_fd >= 0) return;  // a file: the next chunk once this one is out
            piece = body_reader_.pending();  // inline: all of it went; now Done
        }
        if (body_reader_.state() == RequestBodyReader::State::ShortFile) {
            fail(BackendFailure::Unavailable, "upload file shorter than its size");
            return;
        }
        // STDIN carries exactly CONTENT_LENGTH bytes, then the empty record.
        fcgi::append_stdin_end(out_, kRequestId);
        body_done_ = true;
    }

    uint32_t wanted_events() const {
        if (stage_ == Stage::Connecting) return EPOLLOUT;
        uint32_t events = 0;
        if (!write_failed_ && out_pos_ < out_.size()) events |= EPOLLOUT;
        if (!paused_) events |= EPOLLIN | EPOLLRDHUP;
        return events;
    }

    // Reported on the next turn: this may run inside a sink callback (set_paused).
    void update_events() {
        if (fd_ && watched_ && !loop_.set_events(fd_.get(), wanted_events()))
            fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(errno));
    }

    void on_events(uint32_t events) {
        if (stage_ == Stage::Done) return;
        if (stage_ == Stage::Connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                fail(BackendFailure::Refused, std::string("connect to ") + gateway_.options().address + ": " + strerror(err));
                return;
            }
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
            stage_ = Stage::Exchanging;
            silence_.activity();
        }
        if (!write_failed_ && out_pos_ < out_.size()) {
            flush();
            if (stage_ == Stage::Done) return;
        }
        if (!paused_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) read_output();
        if (stage_ != Stage::Done) update_events();
    }

    void flush() {
        while (out_pos_ < out_.size()) {
            size_t end = out_.size();
            if (hold_back_ && body_done_) {
                if (out_pos_ + hold_back_ < end) {
                    end -= hold_back_;  // the rest first; the empty STDIN record in a write of its own
                } else {
                    // All but that record is out. Taken already? Then the backend is on this
                    // connection, and nothing is left to check (see pool.h).
                    backend_took_all_ = KeptConnections::unread_bytes(fd_.get()) == 0;
                    hold_back_ = 0;
                }
            }
            ssize_t n = ::send(fd_.get(), out_.data() + out_pos_, end - out_pos_, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                if (reused_ && !got_bytes_ && may_retry_) {
                    retry_fresh();
                    return;
                }
                // The app may have stopped reading after answering: keep reading its output.
                write_failed_ = true;
                out_.clear();
                out_pos_ = 0;
                return;
            }
            out_pos_ += static_cast<size_t>(n);
            silence_.activity();  // the backend took request bytes
            if (out_pos_ == out_.size()) {
                out_.clear();
                out_pos_ = 0;
                refill_body();
                if (stage_ == Stage::Done) return;
                if (body_done_ && out_.empty() && !reused_ && !got_bytes_ && !backend_took_all_)
                    if (auto* pool = gateway_.kept()) pool->written(*this, fd_.get());  // is it read?
            }
        }
    }

    void read_output() {
        for (int i = 0; i < kReadsPerWakeup && stage_ != Stage::Done; ++i) {
            ssize_t n = ::recv(fd_.get(), reader_.prepare(kReadChunk), kReadChunk, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                end_of_stream(strerror(errno));
                return;
            }
            if (n == 0) {
                end_of_stream("connection closed");
                return;
            }
            if (!got_bytes_)
                if (auto* pool = gateway_.kept()) pool->read_by_backend(*this);
            got_bytes_ = true;
            reader_.commit(static_cast<size_t>(n));
            dispatch_records();
        }
    }

    void end_of_stream(const std::string& why) {
        if (reused_ && !got_bytes_ && may_retry_) {
            retry_fresh();  // a kept connection the backend had closed meanwhile
            return;
        }
        if (!got_stdout_)
            fail(BackendFailure::Unavailable, "backend " + why + " before the response");
        else
            fail(BackendFailure::BadResponse, "backend " + why + " before END_REQUEST");
    }

    void dispatch_records() {
        fcgi::Record record;
        for (;;) {
            auto result = reader_.next(record);
            if (result == fcgi::RecordReader::Result::NeedMore) return;
            if (result == fcgi::RecordReader::Result::Error) {
                fail(BackendFailure::BadResponse, reader_.error());
                return;
            }
            if (record.request_id == 0) continue;  // management records: nothing asked, nothing to do
            if (record.request_id != kRequestId) {
                fail(BackendFailure::BadResponse, "record for request id " + std::to_string(record.request_id));
                return;
            }
            switch (record.type) {
                case fcgi::kStdout:
                    if (record.content.empty()) break;  // end of the STDOUT stream
                    got_stdout_ = true;
                    silence_.activity();  // only response bytes count, not STDERR or management records
                    sink_.on_stdout(record.content);
                    break;
                case fcgi::kStderr:
                    if (!record.content.empty()) sink_.on_stderr(record.content);
                    break;
                case fcgi::kEndRequest:
                    finish(record.content);
                    return;
                default:
                    fail(BackendFailure::BadResponse, "unexpected record type " + std::to_string(record.type));
                    return;
            }
            if (stage_ == Stage::Done) return;  // the sink cancelled us
        }
    }

    void finish(std::string_view content) {
        auto end = fcgi::decode_end_request(content);
        if (!end) {
            fail(BackendFailure::BadResponse, "short END_REQUEST record");
            return;
        }
        if (end->protocol_status == fcgi::kOverloaded) {
            fail(BackendFailure::Overloaded, "backend answered FCGI_OVERLOADED");
            return;
        }
        if (end->protocol_status != fcgi::kRequestComplete) {
            fail(BackendFailure::Unavailable,
                 "backend refused the request, protocol status " + std::to_string(end->protocol_status));
            return;
        }
        stage_ = Stage::Done;
        silence_.stop();
        bool clean = reader_.buffered() == 0 && body_done_ && out_pos_ == out_.size() && !write_failed_;
        if (auto* pool = gateway_.kept(); pool && clean) {
            pool->release(fd_.release());  // the pool takes over the descriptor and its watch
            watched_ = false;
        } else {
            close_connection();  // promptly: php-fpm and libfcgi wait for our close
        }
        sink_.on_complete();
    }

    void retry_fresh() {
        close_connection();
        int error = 0;
        int fd = gateway_.kept() ? gateway_.kept()->reconnect(error) : -1;
        on_connection(fd, false, error);
    }

    void close_connection() {
        if (!fd_) return;
        if (auto* pool = gateway_.kept()) {
            pool->discard(fd_.release());  // unwatches and closes
        } else {
            if (watched_) loop_.unwatch(fd_.get());
            fd_.reset();
        }
        watched_ = false;
    }

    void fail(BackendFailure kind, const std::string& why) {
        if (stage_ == Stage::Done) return;
        stage_ = Stage::Done;
        silence_.stop();
        if (auto* pool = gateway_.kept()) pool->forget(*this);
        close_connection();
        sink_.on_failure(kind, why);
    }

    // Reports a failure found while starting, once the caller holds the handle.
    void fail_later(BackendFailure kind, std::string why) {
        loop_.post(life_.guard([this, kind, why = std::move(why)] { fail(kind, why); }));
    }

    FastcgiGateway& gateway_;
    Loop& loop_;
    const CgiEnv& env_;
    const BodySource& body_;
    ExchangeSink& sink_;
    LifeToken life_;
    SilenceTimer silence_;

    Stage stage_ = Stage::Waiting;
    UniqueFd fd_;  // the connection while this exchange has it
    bool watched_ = false;
    bool reused_ = false;
    bool may_retry_ = false;  // GET, HEAD, OPTIONS, TRACE
    bool paused_ = false;
    bool got_bytes_ = false;
    bool got_stdout_ = false;
    bool write_failed_ = false;
    std::optional<std::string> params_;  // encoded once, before a connection is asked for
    std::string out_;
    size_t out_pos_ = 0;
    size_t hold_back_ = 0;  // trailing bytes of out_ (the empty STDIN record) sent in a write of their own
    bool backend_took_all_ = false;  // before that last write
    RequestBodyReader body_reader_{body_, kBodyChunk};
    bool body_done_ = false;
    fcgi::RecordReader reader_;
};

}  // namespace

FastcgiGateway::FastcgiGateway(Loop& loop, FastcgiOptions options)
    : loop_(loop), options_(std::move(options)), address_(options_.address) {
    if (options_.keep_conn)
        kept_ = std::make_unique<KeptConnections>(
            loop_,
            KeptConnections::Options{.address = options_.address,
                                     .limit = options_.max_connections,
                                     .learn = address_.is_unix()},
            [this](int& error) { return connect_new(error); });
}

FastcgiGateway::~FastcgiGateway() = default;

std::unique_ptr<Exchange> FastcgiGateway::start(const CgiEnv& env, const BodySource& body, uint64_t /*conn_id*/,
                                                ExchangeSink& sink) {
    auto exchange = std::make_unique<FastcgiExchange>(*this, env, body, sink);
    exchange->begin();
    return exchange;
}

}  // namespace m2b
