#include "adapters/stream/gateway.h"

#include <cerrno>
#include <cstring>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/request_body.h"
#include "adapters/silence_timer.h"
#include "adapters/status_line.h"
#include "adapters/stream/scgi.h"
#include "adapters/stream/uwsgi.h"
#include "base/life_token.h"
#include "base/unique_fd.h"

namespace m2b {

const StreamProtocol kScgi{"scgi", &scgi::encode_head};
const StreamProtocol kUwsgi{"uwsgi", &uwsgi::encode_head};

namespace {

constexpr size_t kBodyChunk = 64 * 1024;
constexpr int kReadsPerWakeup = 4;  // fairness between connections

class StreamExchange final : public Exchange {
public:
    StreamExchange(StreamGateway& gateway, const CgiEnv& env, const BodySource& body, ExchangeSink& sink)
        : gateway_(gateway), loop_(gateway.loop()), env_(env), body_(body), sink_(sink),
          silence_(loop_, gateway.options().timeout, [this] {
              // A connect that never completed reached nothing: another backend may take the request.
              if (stage_ == Stage::Connecting)
                  fail(BackendFailure::ConnectTimeout, "connect to " + gateway_.address().text() + " timed out after " +
                                                    std::to_string(silence_.timeout().count()) + " ms");
              else
                  fail(BackendFailure::Timeout,
                       "backend silent for " + std::to_string(silence_.timeout().count()) + " ms");
          }) {}

    ~StreamExchange() override { close_connection(); }

    // Failures found here are reported on the next turn, once the caller holds the handle.
    void begin() {
        silence_.start();
        std::string error;
        auto head = gateway_.options().protocol->encode_head(env_, body_.size(), error);
        if (!head) {
            fail_later(BackendFailure::BadResponse, error);
            return;
        }
        out_ = std::move(*head);
        int connect_error = 0;
        int fd = gateway_.address().connect(connect_error);
        if (fd < 0) {
            fail_later(connect_error == EAGAIN ? BackendFailure::Overloaded : BackendFailure::Refused,
                       "connect to " + gateway_.address().text() + ": " + strerror(connect_error));
            return;
        }
        fd_.reset(fd);
        stage_ = connect_error == EINPROGRESS ? Stage::Connecting : Stage::Exchanging;
        // A Unix socket is usually connected at once: write now, and watch for what is left.
        if (stage_ == Stage::Exchanging) flush();
        if (ended()) return;
        if (!loop_.watch(fd_.get(), wanted_events(), [this](uint32_t events) { on_events(events); })) {
            int e = errno;
            close_connection();
            fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(e));
            return;
        }
        watched_ = true;
        starting_ = false;
    }

    void set_paused(bool paused) override {
        if (paused_ == paused || ended()) return;
        paused_ = paused;
        silence_.set_paused(paused);
        update_events();
    }

    void cancel() override {
        stage_ = Stage::Done;
        silence_.stop();
        close_connection();
    }

private:
    enum class Stage {
        Connecting,  // connect() in progress
        Exchanging,  // writing the request, reading the response
        Reporting,   // failed; the sink hears of it on the next turn
        Done,        // ended: complete, failed or cancelled
    };
    bool ended() const { return stage_ == Stage::Reporting || stage_ == Stage::Done; }

    bool more_to_send() const {
        return !write_failed_ && (out_pos_ < out_.size() || body_reader_.state() == RequestBodyReader::State::More);
    }

    uint32_t wanted_events() const {
        if (stage_ == Stage::Connecting) return EPOLLOUT;
        uint32_t events = more_to_send() ? uint32_t{EPOLLOUT} : 0u;
        if (!paused_) events |= EPOLLIN | EPOLLRDHUP;
        return events;
    }

    // May run inside a sink callback (set_paused): a failure is reported on the next turn.
    void update_events() {
        if (watched_ && !loop_.set_events(fd_.get(), wanted_events()))
            fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(errno));
    }

    void on_events(uint32_t events) {
        if (ended()) return;
        if (stage_ == Stage::Connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                fail(BackendFailure::Refused, "connect to " + gateway_.address().text() + ": " + strerror(err));
                return;
            }
            if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
            stage_ = Stage::Exchanging;
            silence_.activity();
        }
        if (more_to_send()) {
            flush();
            if (ended()) return;
        }
        if (!paused_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) read_response();
        if (!ended()) update_events();
    }

    // The next bytes of the request: the rest of the head, then the body.
    std::string_view next_bytes() {
        if (out_pos_ < out_.size()) return std::string_view(out_).substr(out_pos_);
        std::string_view body = body_reader_.pending();
        if (body.empty() && body_reader_.state() == RequestBodyReader::State::ShortFile)
            fail(BackendFailure::Unavailable, "upload file shorter than its size");
        return body;
    }

    void flush() {
        while (!ended()) {
            std::string_view bytes = next_bytes();
            if (bytes.empty()) return;
            ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                // The app may answer without reading the whole body (a 413): keep reading.
                write_failed_ = true;
                return;
            }
            silence_.activity();  // the backend took request bytes
            if (out_pos_ < out_.size())
                out_pos_ += static_cast<size_t>(n);
            else
                body_reader_.consume(static_cast<size_t>(n));
        }
    }

    void read_response() {
        char* buffer = gateway_.read_buffer();
        for (int i = 0; i < kReadsPerWakeup && !ended() && !paused_; ++i) {
            ssize_t n = ::recv(fd_.get(), buffer, StreamGateway::kReadBufferSize, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                fail(got_bytes_ ? BackendFailure::BadResponse : BackendFailure::Unavailable,
                     std::string("backend connection: ") + strerror(errno) +
                         (got_bytes_ ? " in the middle of the response" : " before the response"));
                return;
            }
            if (n == 0) {
                end_of_response();
                return;
            }
            got_bytes_ = true;
            silence_.activity();
            std::string_view out = status_line_.feed(std::string_view(buffer, static_cast<size_t>(n)));
            if (status_line_.state() == StatusLineToCgi::State::Error) {
                fail(BackendFailure::BadResponse, status_line_.error());
                return;
            }
            if (!out.empty()) sink_.on_stdout(out);  // may pause or cancel us
        }
    }

    // The backend closed: the end of the response in these protocols.
    void end_of_response() {
        if (!got_bytes_) {
            fail(BackendFailure::Unavailable, "backend closed the connection before the response");
            return;
        }
        if (status_line_.state() != StatusLineToCgi::State::Passing) {
            fail(BackendFailure::BadResponse, "backend closed the connection inside the status line");
            return;
        }
        stage_ = Stage::Done;
        silence_.stop();
        close_connection();
        sink_.on_complete();
    }

    void close_connection() {
        if (!fd_) return;
        if (watched_) loop_.unwatch(fd_.get());
        watched_ = false;
        fd_.reset();
    }

    void fail(BackendFailure kind, const std::string& why) {
        if (ended()) return;
        if (starting_) {  // inside Gateway::start: the caller does not hold the handle yet
            fail_later(kind, why);
            return;
        }
        stage_ = Stage::Done;
        silence_.stop();
        close_connection();
        sink_.on_failure(kind, why);
    }

    void fail_later(BackendFailure kind, std::string why) {
        if (ended()) return;
        stage_ = Stage::Reporting;
        silence_.stop();
        close_connection();
        loop_.post(life_.guard([this, kind, why = std::move(why)] {
            if (stage_ != Stage::Reporting) return;  // cancelled meanwhile
            stage_ = Stage::Done;
            sink_.on_failure(kind, why);
        }));
    }

    StreamGateway& gateway_;
    Loop& loop_;
    const CgiEnv& env_;
    const BodySource& body_;
    ExchangeSink& sink_;
    LifeToken life_;
    SilenceTimer silence_;

    Stage stage_ = Stage::Connecting;
    bool starting_ = true;
    UniqueFd fd_;
    bool watched_ = false;
    bool paused_ = false;
    bool got_bytes_ = false;
    bool write_failed_ = false;
    std::string out_;  // the protocol's head
    size_t out_pos_ = 0;
    RequestBodyReader body_reader_{body_, kBodyChunk};
    StatusLineToCgi status_line_;
};

}  // namespace

StreamGateway::StreamGateway(Loop& loop, StreamOptions options)
    : loop_(loop), options_(std::move(options)), address_(options_.address),
      read_buffer_(std::make_unique<char[]>(kReadBufferSize)) {}

std::unique_ptr<Exchange> StreamGateway::start(const CgiEnv& env, const BodySource& body, uint64_t /*conn_id*/,
                                               ExchangeSink& sink) {
    auto exchange = std::make_unique<StreamExchange>(*this, env, body, sink);
    exchange->begin();
    return exchange;
}

}  // namespace m2b
