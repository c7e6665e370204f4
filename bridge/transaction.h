// One request's life on the bridge side: script resolution and environment,
// the backend exchange, the CGI response head, local redirects and
// X-Mongrel2-Deliver. The reply itself is written by a ReplyStream.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "bridge/cgi_env.h"
#include "adapters/cgi_response.h"
#include "adapters/gateway.h"
#include "adapters/script_path.h"
#include "bridge/http_reply.h"
#include "base/loop.h"
#include "bridge/m2_request.h"
#include "bridge/file_body.h"
#include "bridge/reply_stream.h"

namespace m2b {

class Transaction;

// What a transaction needs from the Mongrel2 handler that owns it. The owner
// must not destroy a transaction from inside one of its calls.
class TransactionOwner {
public:
    virtual ~TransactionOwner() = default;
    // Download flow control and pacing: bytes that may go to this connection now.
    virtual size_t send_window(uint64_t conn_id) = 0;
    // The largest message worth building for this connection.
    virtual size_t frame_limit(uint64_t conn_id) = 0;
    // The connection waits on Mongrel2's side, not on its client.
    virtual bool waits_on_server(uint64_t conn_id) = 0;
    // One message to the client (empty: close after what is queued).
    virtual void send_to(const std::string& sender, uint64_t conn_id, std::string_view bytes) = 0;
    // The same, handed over without a copy.
    virtual void send_to(const std::string& sender, uint64_t conn_id, OutFrame frame) = 0;
    // The backend is done with this request: its slot is free.
    virtual void released(Transaction& t) = 0;
    // The reply is handed over (or abandoned): the next request may start.
    virtual void finished(Transaction& t) = 0;
    // An empty X-Mongrel2-Deliver: keep the requester's connection open.
    virtual void hold(Transaction& t) = 0;
    // A reply for the connections `ids` (HEAD requesters get `head_only`).
    virtual void deliver(Transaction& t, std::span<const uint64_t> ids, std::string full, std::string head_only) = 0;
    // The client stopped taking bytes: close its connection and forget it.
    virtual void abandon(Transaction& t) = 0;
    virtual void access_log(const Transaction& t) = 0;
};

struct TransactionSettings {
    ScriptOptions script;
    EnvOptions env;
    bool allow_nph = false;  // CGI only: FastCGI has no NPH (FastCGI spec §6.1)
    ReplyLimits reply;
    std::chrono::milliseconds deadline{0};  // 0: none
    uid_t upload_owner = 0;                 // owner every finished upload must have
    std::vector<std::string> sendfile_roots;  // canonical; X-Sendfile may name files inside them
};

class Transaction final : public ExchangeSink, private ReplyConnection {
public:
    enum class State {
        Queued,    // behind earlier requests of its connection
        Waiting,   // admitted, waiting for a backend slot
        Running,   // holds a slot: the backend works on it
        Replying,  // the backend is done; the reply drains to the client
        Done,
    };

    Transaction(Loop& loop, Gateway& gateway, const TransactionSettings& settings, TransactionOwner& owner,
                Request request);
    ~Transaction() override;

    // The body is a finished upload at `path`, opened and checked at start.
    void attach_upload(std::string path);
    // Answer `status` without the backend when this request's turn comes;
    // `close` ends the connection after it.
    void refuse(int status, std::string why, bool close);

    // A request m2bridge makes itself (--disconnect-path) for a client that is
    // gone: whatever would go back to that connection is dropped; a deliver to
    // other connections still goes out.
    void discard_own_reply() { discard_own_reply_ = true; }
    bool discards_own_reply() const { return discard_own_reply_; }

    void wait_for_slot() { state_ = State::Waiting; }
    void start();
    // The client is gone: stop everything, send nothing, call nobody.
    void cancel();
    // Mongrel2 may take more bytes for this connection.
    void writable() { stream_.writable(); }

    State state() const { return state_; }
    uint64_t conn_id() const { return request_.conn_id; }
    const std::string& sender() const { return request_.sender; }
    const Request& request() const { return request_; }
    const ReplyContext& reply_context() const { return reply_ctx_; }
    int status() const { return status_; }
    uint64_t bytes_sent() const { return stream_.bytes_sent() + delivered_bytes_; }
    Loop::Clock::duration stalled_for() const { return stream_.stalled_for(); }
    double elapsed_ms() const;

    // ExchangeSink
    void on_stdout(std::string_view bytes) override;
    void on_stderr(std::string_view bytes) override;
    void on_complete() override;
    void on_failure(BackendFailure failure, std::string_view why) override;

private:
    // ReplyConnection
    size_t send_window() override { return discard_own_reply_ ? SIZE_MAX : owner_.send_window(request_.conn_id); }
    size_t frame_limit() override { return owner_.frame_limit(request_.conn_id); }
    bool waits_on_server() override { return !discard_own_reply_ && owner_.waits_on_server(request_.conn_id); }
    void send(std::string_view bytes) override {
        if (!discard_own_reply_) owner_.send_to(request_.sender, request_.conn_id, bytes);
    }
    void send(OutFrame frame) override {
        if (!discard_own_reply_) owner_.send_to(request_.sender, request_.conn_id, std::move(frame));
    }
    void backend_paused(bool paused) override;
    void reply_flushed() override;
    void reply_stalled() override;

    void run();
    bool open_upload();
    void handle_head();
    void local_redirect();
    void deliver_reply();
    void send_file();
    void file_sent(const std::string& error);
    void reply_error(int status);
    void release_backend();
    void finish_if_sent();
    void end_with_error(int status);
    void finish();
    void drop_exchange();
    void drop_upload();
    void on_deadline();
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
    State state_ = State::Queued;
    bool discard_own_reply_ = false;
    ReplyStream stream_;

    int upload_fd_ = -1;
    uint64_t upload_length_ = 0;
    std::string upload_path_;
    BodySource body_;
    CgiEnv env_;
    std::unique_ptr<Exchange> exchange_;
    std::unique_ptr<FileBody> file_;  // an X-Sendfile reply's body, after the backend is released
    Loop::TimerId deadline_timer_ = 0;
    int redirects_ = 0;
    int refusal_status_ = 0;
    std::string refusal_why_;

    CgiHeadParser parser_;
    bool head_parsed_ = false;
    bool delivering_ = false;
    std::string deliver_body_;
    size_t stderr_logged_ = 0;
    int status_ = 0;
    uint64_t delivered_bytes_ = 0;
};

}  // namespace m2b
