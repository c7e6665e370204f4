#include "adapters/stream/gateway.h"

#include <cerrno>
#include <cstring>

#include "adapters/byte_pump.h"
#include "adapters/failure_report.h"
#include "adapters/request_body.h"
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

class StreamExchange final : public Exchange, private BytePump::Protocol {
public:
    StreamExchange(StreamGateway& gateway, const CgiEnv& env, const BodySource& body, ExchangeSink& sink)
        : gateway_(gateway), loop_(gateway.loop()), env_(env), sink_(sink), body_reader_(body, kBodyChunk),
          pump_(loop_, *this, gateway.options().timeout) {}

    // Failures found here are reported on the next turn, once the caller holds the handle.
    void begin() {
        open_connection();
        starting_ = false;
    }

    void set_paused(bool paused) override {
        if (stage_ == Stage::Exchanging) pump_.set_paused(paused);
    }

    void cancel() override {
        stage_ = Stage::Done;
        pump_.stop();
    }

private:
    enum class Stage {
        Exchanging,  // the pump runs
        Reporting,   // failed; the sink hears of it on the next turn
        Done,        // ended: complete, failed or cancelled
    };

    void open_connection() {
        pump_.start_timer();
        std::string error;
        auto head = gateway_.options().protocol->encode_head(env_, body_reader_.size(), error);
        if (!head) {
            fail(BackendFailure::BadResponse, error);
            return;
        }
        head_ = std::move(*head);
        int connect_error = 0;
        UniqueFd socket(gateway_.address().connect(connect_error));
        if (!socket) {
            fail(connect_error == EAGAIN ? BackendFailure::Overloaded : BackendFailure::Refused,
                 "connect to " + gateway_.address().text() + ": " + strerror(connect_error));
            return;
        }
        auto progress = connect_error == EINPROGRESS ? BytePump::Connect::InProgress : BytePump::Connect::Done;
        if (!pump_.start_socket(std::move(socket), progress))
            fail(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(errno));
    }

    // The protocol's head, then the body.
    std::string_view unsent() override {
        if (head_pos_ < head_.size()) return std::string_view(head_).substr(head_pos_);
        std::string_view body = body_reader_.pending();
        if (body.empty() && body_reader_.state() == RequestBodyReader::State::ShortFile)
            fail(BackendFailure::Unavailable, "upload file shorter than its size");
        return body;
    }

    void sent(size_t n) override {
        if (head_pos_ < head_.size())
            head_pos_ += n;
        else
            body_reader_.consume(n);
    }

    std::span<char> read_space() override { return BytePump::scratch(); }

    void received(size_t n) override {
        got_bytes_ = true;
        pump_.progress();
        std::string_view out = status_line_.feed(std::string_view(BytePump::scratch().data(), n));
        if (status_line_.state() == StatusLineToCgi::State::Error) {
            fail(BackendFailure::BadResponse, status_line_.error());
            return;
        }
        if (!out.empty()) sink_.on_stdout(out);  // may pause or cancel us
    }

    // The backend closed: the end of the response in these protocols.
    void read_ended(int error) override {
        if (error != 0) {
            fail(got_bytes_ ? BackendFailure::BadResponse : BackendFailure::Unavailable,
                 std::string("backend connection: ") + strerror(error) +
                     (got_bytes_ ? " in the middle of the response" : " before the response"));
            return;
        }
        if (!got_bytes_) {
            fail(BackendFailure::Unavailable, "backend closed the connection before the response");
            return;
        }
        if (status_line_.state() != StatusLineToCgi::State::Passing) {
            fail(BackendFailure::BadResponse, "backend closed the connection inside the status line");
            return;
        }
        stage_ = Stage::Done;
        pump_.stop();
        sink_.on_complete();
    }

    void connect_failed(int error) override {
        fail(BackendFailure::Refused, "connect to " + gateway_.address().text() + ": " + strerror(error));
    }

    void silent(bool connecting) override {
        // A connect that never completed reached nothing: another backend may take the request.
        if (connecting)
            fail(BackendFailure::ConnectTimeout, "connect to " + gateway_.address().text() + " timed out after " +
                                                     std::to_string(pump_.timeout().count()) + " ms");
        else
            fail(BackendFailure::Timeout, "backend silent for " + std::to_string(pump_.timeout().count()) + " ms");
    }

    void watch_failed(int error) override {
        fail_later(BackendFailure::Unavailable, std::string("cannot watch descriptor: ") + strerror(error));
    }

    void fail(BackendFailure kind, const std::string& why) {
        if (starting_) {  // inside Gateway::start: the caller does not hold the handle yet
            fail_later(kind, why);
            return;
        }
        if (stage_ != Stage::Exchanging) return;
        stage_ = Stage::Done;
        pump_.stop();
        sink_.on_failure(kind, why);
    }

    void fail_later(BackendFailure kind, std::string why) {
        if (stage_ != Stage::Exchanging) return;
        report_failure_next_turn(loop_, life_, stage_, sink_, kind, std::move(why), [this] { pump_.stop(); });
    }

    StreamGateway& gateway_;
    Loop& loop_;
    const CgiEnv& env_;
    ExchangeSink& sink_;
    LifeToken life_;
    Stage stage_ = Stage::Exchanging;
    bool starting_ = true;
    bool got_bytes_ = false;
    std::string head_;  // the protocol's
    size_t head_pos_ = 0;
    RequestBodyReader body_reader_;
    StatusLineToCgi status_line_;
    BytePump pump_;  // last: destroyed first, while what its callbacks use is alive
};

}  // namespace

StreamGateway::StreamGateway(Loop& loop, StreamOptions options)
    : loop_(loop), options_(std::move(options)), address_(options_.address) {}

std::unique_ptr<Exchange> StreamGateway::start(const CgiEnv& env, const BodySource& body, uint64_t /*conn_id*/,
                                               ExchangeSink& sink) {
    auto exchange = std::make_unique<StreamExchange>(*this, env, body, sink);
    exchange->begin();
    return exchange;
}

}  // namespace m2b
