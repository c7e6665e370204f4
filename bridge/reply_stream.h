// The reply writer of one request: frames what the app prints for the client
// (Content-Length, chunked, close-delimited, or raw for JSON sockets and NPH),
// keeps the framed bytes until the connection may take them (Mongrel2's 16
// message queue, download credits), and says when the backend must stop being
// read. Every byte it holds is counted against one limit, so a request holds
// at most `buffer_limit` (plus one backend read) whatever the client does.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/http_reply.h"
#include "bridge/out_frame.h"
#include "base/loop.h"

namespace m2b {

// What the writer needs from the connection it writes to; the Transaction
// implements it toward the Handler. Calls may come from the writer's timers.
class ReplyConnection {
public:
    virtual ~ReplyConnection() = default;
    // Bytes that may go to the client now; 0 means wait for writable().
    virtual size_t send_window() = 0;
    // The largest message worth building: a frame that fits the window whole
    // goes out without a copy.
    virtual size_t frame_limit() { return SIZE_MAX; }
    // One Mongrel2 message to the client; empty `bytes` closes the connection
    // after what is queued.
    virtual void send(std::string_view bytes) = 0;
    // True while the connection waits on Mongrel2's side (the queue to it), not
    // on its client: that time is not a stall.
    virtual bool waits_on_server() { return false; }
    // One message whose bytes are handed over, not copied. Pure, so that no
    // connection falls back to a copy without saying so.
    virtual void send(OutFrame frame) = 0;
    // Stop (true) or restart (false) reading the backend.
    virtual void backend_paused(bool paused) = 0;
    // After end(): every byte was handed to Mongrel2.
    virtual void reply_flushed() = 0;
    // The client took no byte for the send timeout: give up on it.
    virtual void reply_stalled() = 0;
};

struct ReplyLimits {
    size_t buffer_limit = 1024 * 1024;  // bytes held per request; also the largest message
    std::chrono::milliseconds send_timeout{60000};
    // A body complete within this delay (and within buffer_limit) goes out as one
    // message with Content-Length; bytes never wait longer than this to be sent.
    std::chrono::milliseconds flush_delay{20};
};

class ReplyStream {
public:
    enum class State {
        Idle,        // no head yet
        Collecting,  // head known, body gathered for a one-message reply
        Streaming,   // head sent; body framed as it comes
        Ending,      // the reply is complete; framed bytes wait for the connection
        Done,        // everything handed over
    };

    ReplyStream(Loop& loop, ReplyConnection& connection, ReplyContext ctx, ReplyLimits limits);
    ~ReplyStream();
    ReplyStream(const ReplyStream&) = delete;
    ReplyStream& operator=(const ReplyStream&) = delete;

    // The app's head. `declared_length` is its Content-Length, if any.
    void begin(ReplyHead head, std::optional<uint64_t> declared_length);
    // Bytes passed on as they come, no framing (JSON sockets, NPH scripts);
    // `close_at_end` for NPH, whose end is the close.
    void begin_raw(bool close_at_end);
    void body(std::string_view bytes);
    // The backend finished: complete the framing and flush.
    void end();
    // The backend failed after the head: send what arrived, then close so the
    // client sees a short body.
    void abort();
    // A whole reply the bridge writes itself (errors). Only before any head.
    void error(int status, std::vector<std::pair<std::string, std::string>> extra = {});
    // The connection may take more bytes.
    void writable();
    // Close the connection after this reply (before it starts).
    void close_after_reply() { ctx_.client_wants_close = true; }
    // The client is gone: drop everything, call nobody.
    void cancel();

    State state() const { return state_; }
    bool head_sent() const { return state_ == State::Streaming || state_ == State::Ending || state_ == State::Done; }
    bool started() const { return state_ != State::Idle; }
    uint64_t bytes_sent() const { return bytes_sent_; }
    uint64_t body_received() const { return body_received_; }
    size_t buffered() const { return collected_.size() + outbox_bytes_; }
    // How long the connection has taken nothing while bytes wait (zero if none wait).
    Loop::Clock::duration stalled_for() const {
        return stall_timer_ ? Loop::now() - last_progress_ : Loop::Clock::duration::zero();
    }

private:
    void collect(std::string_view bytes);
    void start_streaming();
    void frame(std::string_view bytes, bool final);
    void end_whole();
    void arm_flush();
    void pump();
    void update_backend_pause();
    void arm_stall_timer();
    void check_stall();
    void cancel_flush();
    void cancel_timers();
    void queue(std::initializer_list<std::string_view> pieces);
    void queue(std::string_view framed) { queue({framed}); }
    void queue_frame(OutFrame frame);
    void queue_in_front(std::string_view head, OutFrame body);
    void pop_front_frame();
    size_t frame_capacity();

    Loop& loop_;
    ReplyConnection& connection_;
    ReplyContext ctx_;
    ReplyLimits limits_;
    State state_ = State::Idle;

    ReplyHead head_;
    std::optional<uint64_t> declared_length_;
    bool raw_ = false;
    bool discard_body_ = false;  // HEAD, 204, 304: count the body, send none
    bool close_at_end_ = false;
    Framing framing_ = Framing::None;
    uint64_t body_received_ = 0;
    uint64_t body_framed_ = 0;
    bool overflowed_ = false;  // the app printed more than its Content-Length

    // Collecting: the body so far, with room in front for the head and the
    // envelope, so that a one-message reply is not copied again.
    OutFrame collected_;
    // Framed bytes not handed to Mongrel2 yet, as the messages they will be.
    std::vector<OutFrame> outbox_;  // from outbox_front_
    size_t outbox_front_ = 0;
    size_t outbox_bytes_ = 0;
    bool close_pending_ = false;
    bool backend_paused_ = false;
    uint64_t bytes_sent_ = 0;

    Loop::TimerId flush_timer_ = 0;
    Loop::TimerId stall_timer_ = 0;
    Loop::Clock::time_point last_progress_{};
};

}  // namespace m2b
