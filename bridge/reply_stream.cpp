#include "bridge/reply_stream.h"

#include <algorithm>
#include <ctime>

namespace m2b {

ReplyStream::ReplyStream(Loop& loop, ReplyConnection& connection, ReplyContext ctx, ReplyLimits limits)
    : loop_(loop), connection_(connection), ctx_(ctx), limits_(limits) {}

ReplyStream::~ReplyStream() { cancel_timers(); }

void ReplyStream::begin(ReplyHead head, std::optional<uint64_t> declared_length) {
    if (state_ != State::Idle) return;
    head_ = std::move(head);
    declared_length_ = declared_length;
    discard_body_ = ctx_.head_request || status_has_no_body(head_.status);
    state_ = State::Collecting;
    // HEAD and no-body statuses wait for the end to know the length to announce.
    if (!discard_body_) arm_flush();
}

void ReplyStream::begin_raw(bool close_at_end) {
    if (state_ != State::Idle) return;
    raw_ = true;
    close_at_end_ = close_at_end;
    framing_ = Framing::CloseDelimited;
    state_ = State::Streaming;
}

void ReplyStream::body(std::string_view bytes) {
    if (state_ != State::Collecting && state_ != State::Streaming) return;
    body_received_ += bytes.size();
    if (discard_body_ || bytes.empty()) return;
    if (state_ == State::Streaming && framing_ != Framing::Chunked) {
        // Nothing to write in front of these bytes: framed as they come, one copy fewer.
        frame(bytes, false);
        if (buffered() >= limits_.buffer_limit) {
            cancel_flush();
            pump();
            return;
        }
        arm_flush();
        update_backend_pause();
        return;
    }
    pending_ += bytes;
    if (pending_.size() >= limits_.buffer_limit) {
        // Too large for one message: stream now instead of waiting for the timer.
        if (state_ == State::Collecting) {
            start_streaming();
            return;
        }
        cancel_flush();
        frame_pending(false);
        pump();
        return;
    }
    arm_flush();
    update_backend_pause();
}

void ReplyStream::end() {
    switch (state_) {
        case State::Collecting:
            end_whole();
            return;
        case State::Streaming: {
            cancel_flush();
            frame_pending(true);
            bool short_body = framing_ == Framing::ContentLength && body_framed_ < *declared_length_;
            if (raw_)
                close_pending_ = close_at_end_;
            else
                close_pending_ = short_body || overflowed_ || must_close(ctx_, framing_);
            state_ = State::Ending;
            pump();
            return;
        }
        default:
            return;
    }
}

void ReplyStream::abort() {
    if (state_ == State::Idle || state_ == State::Collecting) {
        error(502);
        return;
    }
    if (state_ != State::Streaming) return;
    cancel_flush();
    frame_pending(false);
    close_pending_ = true;
    state_ = State::Ending;
    pump();
}

void ReplyStream::error(int status, std::vector<std::pair<std::string, std::string>> extra) {
    if (head_sent()) {
        abort();
        return;
    }
    cancel_timers();
    pending_.clear();
    state_ = State::Ending;
    if (!raw_) {  // a JSON socket has no status line to carry it
        queue(build_error_reply(status, ctx_, std::time(nullptr), std::move(extra)));
        close_pending_ = ctx_.client_wants_close;
    }
    pump();
}

void ReplyStream::cancel() {
    cancel_timers();
    state_ = State::Done;
    pending_.clear();
    outbox_.clear();
    outbox_pos_ = 0;
    close_pending_ = false;
}

void ReplyStream::writable() {
    if (state_ != State::Idle && state_ != State::Done) pump();
}

void ReplyStream::start_streaming() {
    cancel_flush();
    framing_ = declared_length_ ? Framing::ContentLength : choose_framing(ctx_, head_.status, -1);
    queue(build_head(head_, ctx_, framing_, declared_length_.value_or(0), std::time(nullptr)));
    state_ = State::Streaming;
    frame_pending(false);
    pump();
}

// Appends body bytes to the outbox in the reply's framing: a chunk (and the
// last chunk when `final`), or the bytes cut at the app's Content-Length, or
// the bytes as they are.
void ReplyStream::frame(std::string_view bytes, bool final) {
    if (framing_ == Framing::Chunked) {
        if (outbox_pos_ == outbox_.size()) {
            outbox_.clear();
            outbox_pos_ = 0;
        }
        append_chunk(outbox_, bytes);
        if (final) outbox_ += kLastChunk;
        body_framed_ += bytes.size();
    } else if (framing_ != Framing::None) {
        if (framing_ == Framing::ContentLength) {
            uint64_t room = *declared_length_ - body_framed_;
            if (bytes.size() > room) {
                overflowed_ = true;
                bytes = bytes.substr(0, room);
            }
        }
        body_framed_ += bytes.size();
        queue(bytes);
    }
}

void ReplyStream::frame_pending(bool final) {
    frame(pending_, final);
    pending_.clear();
}

void ReplyStream::end_whole() {
    cancel_flush();
    uint64_t length = discard_body_ ? declared_length_.value_or(body_received_) : pending_.size();
    if (declared_length_ && !discard_body_) {
        if (length < *declared_length_) {
            // Nothing was sent yet: the client gets an honest error, not a short body.
            state_ = State::Idle;
            error(502);
            return;
        }
        if (length > *declared_length_) {
            overflowed_ = true;
            pending_.resize(*declared_length_);
            length = pending_.size();
        }
    }
    framing_ = choose_framing(ctx_, head_.status, static_cast<int64_t>(length));
    queue(build_head(head_, ctx_, framing_, length, std::time(nullptr)));
    if (!discard_body_ && framing_ != Framing::None) queue(pending_);
    pending_.clear();
    close_pending_ = must_close(ctx_, framing_);
    state_ = State::Ending;
    pump();
}

void ReplyStream::queue(std::string_view framed) {
    if (outbox_pos_ == outbox_.size()) {
        outbox_.clear();
        outbox_pos_ = 0;
    } else if (outbox_pos_ > outbox_.size() / 2) {
        outbox_.erase(0, outbox_pos_);
        outbox_pos_ = 0;
    }
    outbox_ += framed;
}

void ReplyStream::arm_flush() {
    if (flush_timer_) return;
    flush_timer_ = loop_.after(limits_.flush_delay, [this] {
        flush_timer_ = 0;
        if (state_ == State::Collecting) {
            start_streaming();
        } else if (state_ == State::Streaming && buffered() > 0) {
            frame_pending(false);
            pump();
        }
    });
}

// Hands framed bytes to Mongrel2 as far as the connection's window allows.
void ReplyStream::pump() {
    bool blocked = false;
    while (outbox_pos_ < outbox_.size()) {
        size_t n = std::min(outbox_.size() - outbox_pos_, connection_.send_window());
        if (n == 0) {
            blocked = true;
            break;
        }
        connection_.send(std::string_view(outbox_).substr(outbox_pos_, n));
        outbox_pos_ += n;
        bytes_sent_ += n;
        last_progress_ = Loop::now();
    }
    if (outbox_pos_ == outbox_.size()) {
        outbox_.clear();
        outbox_pos_ = 0;
        if (state_ == State::Ending && close_pending_) {
            if (connection_.send_window() == 0) {
                blocked = true;
            } else {
                close_pending_ = false;
                connection_.send("");
            }
        }
    }
    if (blocked) {
        arm_stall_timer();
    } else if (stall_timer_) {
        loop_.cancel(stall_timer_);
        stall_timer_ = 0;
    }
    update_backend_pause();
    if (!blocked && state_ == State::Ending && outbox_.empty() && !close_pending_) {
        state_ = State::Done;
        cancel_timers();
        connection_.reply_flushed();
    }
}

void ReplyStream::update_backend_pause() {
    bool reading = state_ == State::Collecting || state_ == State::Streaming;
    // Resume only once half the limit has gone, so a slow client does not
    // flip the backend on and off for every message.
    bool pause = reading && (backend_paused_ ? buffered() > limits_.buffer_limit / 2 : buffered() >= limits_.buffer_limit);
    if (pause == backend_paused_) return;
    backend_paused_ = pause;
    connection_.backend_paused(pause);
}

void ReplyStream::arm_stall_timer() {
    if (stall_timer_) return;
    last_progress_ = Loop::now();
    stall_timer_ = loop_.after(limits_.send_timeout, [this] { check_stall(); });
}

// One timer per blocked stretch, re-armed for the remainder after progress.
void ReplyStream::check_stall() {
    stall_timer_ = 0;
    auto idle = Loop::now() - last_progress_;
    if (idle >= limits_.send_timeout) {
        connection_.reply_stalled();
        return;
    }
    auto rest = std::chrono::duration_cast<std::chrono::milliseconds>(limits_.send_timeout - idle);
    stall_timer_ = loop_.after(std::max(rest, std::chrono::milliseconds(1)), [this] { check_stall(); });
}

void ReplyStream::cancel_flush() {
    if (flush_timer_) loop_.cancel(flush_timer_);
    flush_timer_ = 0;
}

void ReplyStream::cancel_timers() {
    if (flush_timer_) loop_.cancel(flush_timer_);
    if (stall_timer_) loop_.cancel(stall_timer_);
    flush_timer_ = 0;
    stall_timer_ = 0;
}

}  // namespace m2b
