#include "bridge/reply_stream.h"

#include <algorithm>
#include <ctime>
#include <utility>

namespace m2b {

namespace {
// A collected reply's head and a chunk size line go in front of its body;
// heads larger than this (many cookies) cost the body one more copy.
constexpr size_t kHeadRoom = 4096;
constexpr size_t kTailRoom = 16;                  // a chunk's CRLF and the last chunk
constexpr size_t kCollectRoom = 1024 * 1024;      // a body of several pieces; beyond, it grows by realloc
constexpr size_t kSmallestFrame = 4096;
// Messages stay on malloc's heap (bridge/main.cpp) even with a larger --buffer-size.
constexpr size_t kLargestFrame = 1024 * 1024;
}  // namespace

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
    if (state_ == State::Collecting) {
        // With the length known, a message within the frame limit (the head
        // included) loses nothing; without it, the whole limit keeps Content-Length.
        size_t most = limits_.buffer_limit;
        if (declared_length_) most = std::min(most, frame_capacity() - std::min(frame_capacity() / 2, kHeadRoom));
        if (collected_.size() + bytes.size() < most) {
            collect(bytes);
            update_backend_pause();
            return;
        }
        // Too large for one message: stream now instead of waiting for the timer.
        start_streaming();
        frame(bytes, false);
        pump();
        return;
    }
    frame(bytes, false);
    if (buffered() >= limits_.buffer_limit) {
        cancel_flush();
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
            frame({}, true);
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
    collected_ = OutFrame();
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
    collected_ = OutFrame();
    outbox_.clear();
    outbox_front_ = 0;
    outbox_bytes_ = 0;
    close_pending_ = false;
}

void ReplyStream::writable() {
    if (state_ != State::Idle && state_ != State::Done) pump();
}

// The collected body goes on as the first message, framed where it lies.
void ReplyStream::start_streaming() {
    cancel_flush();
    framing_ = declared_length_ ? Framing::ContentLength : choose_framing(ctx_, head_.status, -1);
    std::string head = build_head(head_, ctx_, framing_, declared_length_.value_or(0), std::time(nullptr));
    state_ = State::Streaming;
    OutFrame body = std::exchange(collected_, OutFrame());
    if (body.empty() || framing_ == Framing::None) {
        queue(head);
        return;
    }
    if (framing_ == Framing::ContentLength && body.size() > *declared_length_) {
        overflowed_ = true;
        body.truncate(*declared_length_);
    }
    if (framing_ == Framing::Chunked) {
        char buf[20];
        size_t bytes = body.size();
        // collect() left room for both; were it not so, the bytes are framed again.
        if (body.tailroom() < 2 || !body.prepend(chunk_size_line(bytes, buf))) {
            queue(head);
            frame(body.view(), false);
            return;
        }
        body.append("\r\n");
        body_framed_ += bytes;
    } else {
        body_framed_ += body.size();
    }
    queue_in_front(head, std::move(body));
}

// Body bytes while the reply is collected whole. The first piece allocates what it
// needs (or the declared length); a second grows the block once to the whole room.
void ReplyStream::collect(std::string_view bytes) {
    size_t room = std::min(limits_.buffer_limit, kCollectRoom) + kTailRoom;
    if (!collected_.allocated()) {
        // Most replies come whole in their first piece, or declare their length: sized for
        // that, not for the largest (a megabyte per reply costs malloc far more than its bytes).
        uint64_t expected = declared_length_ ? std::max<uint64_t>(*declared_length_, bytes.size()) : bytes.size();
        collected_ = OutFrame(OutFrame::kEnvelopeRoom + kHeadRoom, std::min<uint64_t>(expected, room - kTailRoom) + kTailRoom);
    } else if (collected_.tailroom() < bytes.size() + kTailRoom && collected_.size() < room) {
        // A second piece: straight to the whole room, so what came first moves once at most.
        collected_.reserve_tail(room - collected_.size());
    }
    collected_.reserve_tail(bytes.size() + kTailRoom);
    collected_.append(bytes);
}

// Appends body bytes to the outbox in the reply's framing: a chunk (and the
// last chunk when `final`), or the bytes cut at the app's Content-Length, or
// the bytes as they are.
void ReplyStream::frame(std::string_view bytes, bool final) {
    if (framing_ == Framing::Chunked) {
        if (!bytes.empty()) {  // an empty chunk would end the body
            char buf[20];
            queue({chunk_size_line(bytes.size(), buf), bytes, "\r\n"});
            body_framed_ += bytes.size();
        }
        if (final) queue(kLastChunk);
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

void ReplyStream::end_whole() {
    cancel_flush();
    uint64_t length = discard_body_ ? declared_length_.value_or(body_received_) : collected_.size();
    if (declared_length_ && !discard_body_) {
        if (length < *declared_length_) {
            // Nothing was sent yet: the client gets an honest error, not a short body.
            state_ = State::Idle;
            error(502);
            return;
        }
        if (length > *declared_length_) {
            overflowed_ = true;
            collected_.truncate(*declared_length_);
            length = collected_.size();
        }
    }
    framing_ = choose_framing(ctx_, head_.status, static_cast<int64_t>(length));
    std::string head = build_head(head_, ctx_, framing_, length, std::time(nullptr));
    OutFrame body = std::exchange(collected_, OutFrame());
    state_ = State::Ending;
    if (!discard_body_ && framing_ != Framing::None && !body.empty())
        queue_in_front(head, std::move(body));
    else
        queue(head);
    close_pending_ = must_close(ctx_, framing_);
    pump();
}

// Appends to the last message while it has room, then starts new ones. A
// message that ends the reply gets only the room it needs.
void ReplyStream::queue(std::initializer_list<std::string_view> pieces) {
    size_t capacity = frame_capacity();
    size_t left = 0;
    for (std::string_view piece : pieces) left += piece.size();
    for (std::string_view framed : pieces) {
        while (!framed.empty()) {
            size_t room = 0;
            if (!outbox_.empty() && outbox_.back().size() < capacity)
                room = std::min(outbox_.back().tailroom(), capacity - outbox_.back().size());
            if (room == 0) {
                outbox_.emplace_back(OutFrame::kEnvelopeRoom, state_ == State::Ending ? std::min(capacity, left) : capacity);
                room = capacity;
            }
            size_t n = outbox_.back().append(framed.substr(0, room));
            framed.remove_prefix(n);
            left -= n;
            outbox_bytes_ += n;
        }
    }
}

void ReplyStream::queue_frame(OutFrame frame) {
    outbox_bytes_ += frame.size();
    outbox_.push_back(std::move(frame));
}

// A head in front of bytes already framed: written into the room left for it,
// or, for a head larger than that room, both copied into new messages.
void ReplyStream::queue_in_front(std::string_view head, OutFrame body) {
    if (body.prepend(head, OutFrame::kEnvelopeRoom)) {
        queue_frame(std::move(body));
        return;
    }
    queue({head, body.view()});
}

// The outbox's frames before outbox_front_ are gone; they are erased in bulk,
// so a long outbox of small frames is not shifted once per message.
void ReplyStream::pop_front_frame() {
    if (++outbox_front_ == outbox_.size()) {
        outbox_.clear();
        outbox_front_ = 0;
    } else if (outbox_front_ >= 16 && outbox_front_ * 2 >= outbox_.size()) {
        outbox_.erase(outbox_.begin(), outbox_.begin() + static_cast<std::ptrdiff_t>(outbox_front_));
        outbox_front_ = 0;
    }
}

size_t ReplyStream::frame_capacity() {
    return std::clamp(std::min(limits_.buffer_limit, connection_.frame_limit()), kSmallestFrame, kLargestFrame);
}

void ReplyStream::arm_flush() {
    if (flush_timer_) return;
    flush_timer_ = loop_.after(limits_.flush_delay, [this] {
        flush_timer_ = 0;
        if (state_ == State::Collecting) {
            start_streaming();
            pump();
        } else if (state_ == State::Streaming && buffered() > 0) {
            pump();
        }
    });
}

// Hands framed bytes to Mongrel2 as far as the connection's window allows: a
// message that fits goes as it is; one cut at the window is copied.
void ReplyStream::pump() {
    bool blocked = false;
    while (!outbox_.empty()) {
        OutFrame& front = outbox_[outbox_front_];
        size_t n = front.size();
        if (n == 0) {  // never sent: an empty message closes the connection
            pop_front_frame();
            continue;
        }
        size_t window = connection_.send_window();
        if (window == 0) {
            blocked = true;
            break;
        }
        if (n <= window) {
            OutFrame whole = std::move(front);
            pop_front_frame();
            outbox_bytes_ -= n;
            connection_.send(std::move(whole));
        } else {
            n = window;
            connection_.send(front.view().substr(0, n));
            front.consume(n);
            outbox_bytes_ -= n;
        }
        bytes_sent_ += n;
        last_progress_ = Loop::now();
    }
    if (outbox_.empty()) {
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
    if (connection_.waits_on_server()) last_progress_ = Loop::now();
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
