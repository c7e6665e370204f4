// One request's life on the bridge side: script resolution and environment,
// the backend exchange, the CGI response head, and the reply to Mongrel2 with
// its framing, pacing, local redirects and X-Mongrel2-Deliver.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "adapters/cgi_env.h"
#include "adapters/cgi_response.h"
#include "adapters/gateway.h"
#include "adapters/script_path.h"
#include "bridge/http_reply.h"
#include "bridge/loop.h"
#include "bridge/m2_request.h"

namespace m2b {

class Transaction;

// What a transaction needs from the Mongrel2 handler that owns it.
class TransactionOwner {
public:
    virtual ~TransactionOwner() = default;
    virtual void send(std::string_view message) = 0;
    // The transaction is over (reply sent or abandoned). Called once; the
    // owner must not destroy it before the current callback has returned.
    virtual void finished(Transaction& t) = 0;
    // An empty X-Mongrel2-Deliver: keep the requester's connection open.
    virtual void hold(const std::string& sender, uint64_t conn_id, const ReplyContext& ctx) = 0;
    // Sends `bytes` to each id (≤128 per message) and releases held ones.
    virtual void deliver(const std::string& sender, std::span<const uint64_t> ids, std::string_view bytes) = 0;
    virtual void access_log(const Transaction& t) = 0;
    // Download flow control (Mongrel2's download.flow_control): how many
    // bytes may be sent to this connection now, and what was sent.
    virtual size_t send_window(uint64_t conn_id) = 0;
    virtual void sent_bytes(uint64_t conn_id, size_t bytes) = 0;
};

struct TransactionSettings {
    ScriptOptions script;
    EnvOptions env;
    bool allow_nph = false;  // CGI only: FastCGI has no NPH (FastCGI spec §6.1)
};

class Transaction final : public ExchangeSink {
public:
    Transaction(Loop& loop, Gateway& gateway, const TransactionSettings& settings, TransactionOwner& owner,
                Request request);
    ~Transaction() override;

    // The body is a finished upload: `fd` open on `path`, deleted when done.
    void attach_upload(int fd, uint64_t length, std::string path);

    void start();
    // Answer without the backend (queue full: 503).
    void reject(int status, std::string_view why);
    // Answer `status` instead of running the backend when this request's turn comes.
    void refuse_when_started(int status, std::string why) {
        refusal_status_ = status;
        refusal_why_ = std::move(why);
    }
    // The client is gone: stop the backend, send nothing.
    void cancel();
    // Mongrel2 wrote bytes to this connection: more may be sent.
    void on_credits();

    uint64_t conn_id() const { return request_.conn_id; }
    const std::string& sender() const { return request_.sender; }
    const Request& request() const { return request_; }
    bool running() const { return state_ == State::Running; }
    bool done() const { return state_ == State::Done; }
    bool draining() const { return state_ == State::Draining; }
    int status() const { return status_; }
    uint64_t bytes_sent() const { return bytes_sent_; }
    double elapsed_ms() const;

    // ExchangeSink
    void on_stdout(std::string_view bytes) override;
    void on_stderr(std::string_view bytes) override;
    void on_complete() override;
    void on_failure(BackendFailure failure, std::string_view why) override;

private:
    // Draining: the reply is complete but waits in the outbox for credits.
    enum class State { Waiting, Running, Draining, Done };

    void handle_head();
    void local_redirect();
    void schedule_output();
    void start_streaming();
    void send_pending(bool final);
    void frame_pending(std::string& out, bool final);
    void finish_whole_body();
    void finish_stream();
    void deliver_reply();
    void reply_error(int status, std::vector<std::pair<std::string, std::string>> extra = {});
    void send_message(std::string_view bytes);
    void close_client();
    void pump();
    void finish();
    void drop_exchange();
    void drop_upload();
    void cancel_timers();
    std::string log_prefix() const;

    Loop& loop_;
    Gateway& gateway_;
    const TransactionSettings& settings_;
    TransactionOwner& owner_;
    Request request_;
    ReplyContext reply_ctx_;
    bool raw_ = false;  // JSON socket: no HTTP framing
    bool nph_ = false;  // nph-* CGI script: its output is the whole HTTP response
    Loop::Clock::time_point started_at_ = Loop::now();

    int upload_fd_ = -1;
    uint64_t upload_length_ = 0;
    std::string upload_path_;
    BodySource body_;
    CgiEnv env_;
    std::unique_ptr<Exchange> exchange_;
    State state_ = State::Waiting;
    int redirects_ = 0;
    int refusal_status_ = 0;
    std::string refusal_why_;

    CgiHeadParser parser_;
    bool head_parsed_ = false;
    bool discard_body_ = false;
    bool delivering_ = false;
    std::string deliver_body_;
    Framing framing_ = Framing::None;
    bool head_sent_ = false;
    bool paused_ = false;
    bool overflowed_ = false;  // body longer than the app's Content-Length
    std::string pending_;
    uint64_t body_seen_ = 0;
    uint64_t body_framed_ = 0;
    Loop::TimerId flush_timer_ = 0;
    Loop::Clock::time_point last_send_{};
    size_t stderr_logged_ = 0;
    std::string outbox_;  // framed reply bytes not yet handed to Mongrel2 (flow control)
    bool close_pending_ = false;
    bool paused_for_outbox_ = false;

    int status_ = 0;
    uint64_t bytes_sent_ = 0;
};

}  // namespace m2b
