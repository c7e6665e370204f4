#include "adapters/fastcgi/client.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "adapters/byte_pump.h"
#include "adapters/fastcgi/pool.h"
#include "adapters/fastcgi/record.h"
#include "adapters/failure_report.h"
#include "adapters/request_body.h"
#include "base/life_token.h"
#include "base/unique_fd.h"

namespace m2b {

namespace {

constexpr uint16_t kRequestId = 1;  // one request per connection: no multiplexing
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kBodyChunk = 4 * fcgi::kMaxContent;
constexpr size_t kStdinEndSize = 8;  // the empty STDIN record: a header alone

// The protocol on the byte pump (byte_pump.h): the request encoded as
// BEGIN_REQUEST, PARAMS and STDIN records; the response decoded from records.
class FastcgiExchange final : public Exchange, private KeptConnections::Waiter, private BytePump::Protocol {
public:
    FastcgiExchange(FastcgiGateway& gateway, const CgiEnv& env, const BodySource& body, ExchangeSink& sink)
        : gateway_(gateway), loop_(gateway.loop()), env_(env), body_(body), sink_(sink),
          pump_(loop_, *this, gateway.options().timeout) {
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
        pump_.start_timer();  // the wait for a kept connection counts
        params_ = fcgi::encode_params(kRequestId, env_);
        if (!params_) {
            fail(BackendFailure::BadResponse, "a request parameter does not fit one FastCGI record");
        } else if (auto* pool = gateway_.kept()) {
            bool reused = false;
            int error = 0;
            int fd = pool->acquire(*this, /*fresh_only=*/!may_retry_, reused, error);
            if (fd >= 0 || error != 0) on_connection(fd, reused, error);  // else waiting: the pool calls on_connection
        } else {
            int error = 0;
            int fd = gateway_.connect_new(error);
            on_connection(fd, false, error);
        }
        starting_ = false;
    }

    void set_paused(bool paused) override {
        if (running()) pump_.set_paused(paused);
    }

    void cancel() override {
        stage_ = Stage::Done;
        end_exchange();
    }

private:
    enum class Stage {
        Waiting,     // for a kept connection to come free
        Exchanging,  // the pump runs on a connection
        Reporting,   // failed; the sink hears of it on the next turn
        Done,        // ended: complete, failed or cancelled
    };

    // A connection, from the pool or just made: queue BEGIN, PARAMS and the
    // body for the pump.
    void on_connection(int fd, bool reused, int error) override {
        if (!running()) {  // cannot happen: a cancelled exchange has left the queue
            if (fd >= 0) gateway_.kept() ? gateway_.kept()->discard(fd) : (void)::close(fd);
            return;
        }
        if (fd < 0) {
            BackendFailure kind = error == EAGAIN ? BackendFailure::Overloaded : BackendFailure::Refused;
            fail_later(kind, std::string("connect to ") + gateway_.options().address + ": " + strerror(error));
            return;
        }
        stage_ = Stage::Exchanging;
        reused_ = reused;
        // On a fresh connection the pool checks that the backend takes the request (pool.h).
        auto* pool = gateway_.kept();
        hold_back_ = pool && pool->learning() && !reused ? kStdinEndSize : 0;
        backend_took_all_ = false;
        out_.clear();
        out_pos_ = 0;
        body_reader_ = RequestBodyReader(body_, kBodyChunk);  // from the start, also on a retry
        body_done_ = false;
        write_failed_ = false;
        reader_ = fcgi::RecordReader();
        // BEGIN, PARAMS, the first piece of the body and the end of STDIN, in one allocation.
        size_t piece = std::min<uint64_t>(body_reader_.size(), kBodyChunk);
        out_.reserve(2 * fcgi::kHeaderLen + params_->size() + fcgi::records_size(piece) + kStdinEndSize);
        fcgi::append_begin_request(out_, kRequestId, pool != nullptr);
        out_ += *params_;
        refill_body();  // a small request goes out in one write
        if (stage_ != Stage::Exchanging) {
            gateway_.kept() ? gateway_.kept()->discard(fd) : (void)::close(fd);
            return;
        }
        pump_.progress();
        auto connect = reused                  ? BytePump::Connect::Kept
                       : error == EINPROGRESS ? BytePump::Connect::InProgress
                                              : BytePump::Connect::Done;
        if (!pump_.start_socket(UniqueFd(fd), connect)) {
            int e = errno;
            close_connection();
            fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(e));
        }
    }

    // Appends the next piece of the body (STDIN records) to the output buffer.
    void refill_body() {
        std::string_view piece = body_reader_.pending();
        if (!piece.empty()) {
            fcgi::append_stdin(out_, kRequestId, piece);
            body_reader_.consume(piece.size());
            if (body_reader_.from_file()) return;  // a file: the next chunk once this one is out
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

    std::string_view unsent() override {
        if (out_pos_ == out_.size()) {
            out_.clear();
            out_pos_ = 0;
            if (!body_done_) refill_body();
            if (stage_ != Stage::Exchanging) return {};
        }
        size_t end = out_.size();
        if (hold_back_ && body_done_) {
            if (out_pos_ + hold_back_ < end) {
                end -= hold_back_;  // the rest first; the empty STDIN record in a write of its own
            } else {
                // All but that record is out. Taken already? Then the backend is on this
                // connection, and nothing is left to check (see pool.h).
                backend_took_all_ = KeptConnections::unread_bytes(pump_.socket()) == 0;
                hold_back_ = 0;
            }
        }
        return std::string_view(out_).substr(out_pos_, end - out_pos_);
    }

    void sent(size_t n) override {
        out_pos_ += n;
        if (body_done_ && out_pos_ == out_.size() && !reused_ && !got_bytes_ && !backend_took_all_)
            if (auto* pool = gateway_.kept()) pool->written(*this, pump_.socket());  // is it read?
    }

    void send_failed(int /*error*/) override {
        if (reused_ && !got_bytes_ && may_retry_) {
            retry_fresh();
            return;
        }
        // The app may have stopped reading after answering: keep reading its output.
        write_failed_ = true;
        out_.clear();
        out_pos_ = 0;
    }

    std::span<char> read_space() override { return {reader_.prepare(kReadChunk), kReadChunk}; }

    void received(size_t n) override {
        if (!got_bytes_)
            if (auto* pool = gateway_.kept()) pool->read_by_backend(*this);
        got_bytes_ = true;
        reader_.commit(n);
        dispatch_records();
    }

    void read_ended(int error) override {
        std::string why = error ? strerror(error) : "connection closed";
        if (reused_ && !got_bytes_ && may_retry_) {
            retry_fresh();  // a kept connection the backend had closed meanwhile
            return;
        }
        if (!got_stdout_)
            fail(BackendFailure::Unavailable, "backend " + why + " before the response");
        else
            fail(BackendFailure::BadResponse, "backend " + why + " before END_REQUEST");
    }

    void connect_failed(int error) override {
        fail(BackendFailure::Refused, std::string("connect to ") + gateway_.options().address + ": " + strerror(error));
    }

    void silent(bool connecting) override {
        // A connect that never completed reached nothing: another backend may take the request.
        if (connecting)
            fail(BackendFailure::ConnectTimeout, "connect to " + gateway_.options().address + " timed out after " +
                                                     std::to_string(pump_.timeout().count()) + " ms");
        else
            fail(BackendFailure::Timeout, "backend silent for " + std::to_string(pump_.timeout().count()) + " ms");
    }

    void watch_failed(int error) override {
        fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(error));
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
                    pump_.progress();  // only response bytes count, not STDERR or management records
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
            if (!running()) return;  // the sink cancelled us
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
        bool clean = reader_.buffered() == 0 && body_done_ && out_pos_ == out_.size() && !write_failed_;
        UniqueFd socket;
        if (auto* pool = gateway_.kept(); pool && clean && (socket = pump_.release_socket()))
            pool->release(socket.release());  // the pool takes over the descriptor and its watch
        else
            close_connection();  // promptly: php-fpm and libfcgi wait for our close
        pump_.stop();
        sink_.on_complete();
    }

    void retry_fresh() {
        close_connection();
        int error = 0;
        int fd = gateway_.kept() ? gateway_.kept()->reconnect(error) : -1;
        on_connection(fd, false, error);
    }

    void close_connection() {
        if (auto* pool = gateway_.kept()) {
            UniqueFd socket = pump_.release_socket();
            if (socket) pool->discard(socket.release());  // unwatches and closes
        } else {
            pump_.close();
        }
    }

    bool running() const { return stage_ == Stage::Waiting || stage_ == Stage::Exchanging; }

    void end_exchange() {
        if (auto* pool = gateway_.kept()) pool->forget(*this);
        close_connection();
        pump_.stop();
    }

    void fail(BackendFailure kind, const std::string& why) {
        if (starting_) {  // inside Gateway::start: the caller does not hold the handle yet
            fail_later(kind, why);
            return;
        }
        if (!running()) return;
        end_exchange();
        stage_ = Stage::Done;
        sink_.on_failure(kind, why);
    }

    // Ends now, reports on the next turn: while starting, or inside a sink callback.
    void fail_later(BackendFailure kind, std::string why) {
        if (!running()) return;
        report_failure_next_turn(loop_, life_, stage_, sink_, kind, std::move(why), [this] { end_exchange(); });
    }

    FastcgiGateway& gateway_;
    Loop& loop_;
    const CgiEnv& env_;
    const BodySource& body_;
    ExchangeSink& sink_;
    LifeToken life_;

    Stage stage_ = Stage::Waiting;
    bool starting_ = true;
    bool reused_ = false;
    bool may_retry_ = false;  // GET, HEAD, OPTIONS, TRACE
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
    BytePump pump_;  // last: destroyed first, while what its callbacks use is alive
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
