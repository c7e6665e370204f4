// One ZMTP connection from m2bridge to a socket Mongrel2 binds, run on the
// loop: it connects (and reconnects every 100 ms, as libzmq does), makes the
// NULL handshake, hands on the single-frame messages it reads and writes the
// frames it is given. No I/O thread and no locks: a request is read, and its
// reply written, by the thread that serves it (docs/design.md, "Speaking ZMTP
// on the loop").
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <vector>

#include "base/life_token.h"
#include "base/loop.h"
#include "base/unique_fd.h"
#include "bridge/out_frame.h"

namespace m2b {

class ZmtpConnection {
public:
    enum class State {
        Waiting,      // no socket; the next attempt is on a timer
        Connecting,   // connect() in progress
        Handshaking,  // greetings and READY commands being exchanged
        Ready,        // messages flow
        Closed,       // for good
    };
    using OnMessage = std::function<void(std::string_view)>;
    using OnLost = std::function<void(std::string_view why)>;
    using OnWritten = std::function<void()>;

    // The most a message read may hold; a larger one is skipped, with a log line.
    static constexpr size_t kMaxMessage = 64 * 1024 * 1024;
    static constexpr std::chrono::milliseconds kReconnect{100};
    static constexpr std::chrono::milliseconds kHandshakeDeadline{30'000};

    // `endpoint` is tcp://HOST:PORT or ipc://PATH; throws std::runtime_error
    // naming it when it is neither or its host does not resolve. A name is
    // resolved here, once, to IPv4 addresses (libzmq's default), tried in turn;
    // [IPv6] is taken as written.
    // `peer_types`: the Socket-Types accepted from the peer (PUSH for our PULL).
    ZmtpConnection(Loop& loop, std::string endpoint, std::string socket_type, std::vector<std::string> peer_types);
    ~ZmtpConnection();
    ZmtpConnection(const ZmtpConnection&) = delete;
    ZmtpConnection& operator=(const ZmtpConnection&) = delete;

    // on_message: a message read (none for a socket that only sends);
    // on_lost: a Ready connection dropped; on_written: queued bytes went out.
    void set_callbacks(OnMessage on_message, OnLost on_lost, OnWritten on_written);
    void start();
    void close();  // no more reading, writing or reconnecting
    // Drops the connection without reporting it lost, and connects afresh:
    // when the other socket to the same Mongrel2 was lost.
    void restart();
    State state() const { return state_; }
    const std::string& endpoint() const { return endpoint_; }

    // Queues one single-frame message: `frame` has room in front for its head
    // (zmtp::kMaxFrameHead), or is copied. Dropped, as a PUB drops what it has
    // no subscriber for, unless the connection is Ready.
    void send(OutFrame frame);
    void send(std::string_view message);
    // Memory held by frames not yet written.
    size_t queued_bytes() const { return queued_bytes_; }

private:
    void attempt();
    void on_events(uint32_t events);
    void finish_connect();
    void read_some();
    void make_room(size_t bytes);
    bool accepting();
    void process_input();
    bool take_handshake();
    void take_command(std::string_view body);
    void flush();
    void want_writable(bool yes);
    void queue_front(std::string bytes);
    void drop(std::string_view why);
    void tear_down();
    void retry_later();
    void forget_queue();

    Loop& loop_;
    std::string endpoint_;
    std::string socket_type_;
    std::vector<std::string> peer_types_;
    struct Address {
        sockaddr_storage storage{};
        socklen_t size = 0;
    };
    std::vector<Address> addresses_;
    size_t next_address_ = 0;
    bool is_tcp_ = false;

    State state_ = State::Waiting;
    UniqueFd fd_;
    bool writable_wanted_ = false;
    bool greeting_seen_ = false;
    Loop::TimerId timer_ = 0;  // reconnect or handshake deadline
    unsigned failures_ = 0;  // attempts failed since the last Ready

    // Input: [in_begin_, in_end_) of in_ is read and not yet taken.
    std::unique_ptr<char[]> in_;
    size_t in_capacity_ = 0, in_begin_ = 0, in_end_ = 0;
    size_t wanted_ = 0;          // bytes the frame at in_begin_ needs in all
    uint64_t skipping_ = 0;      // bytes left of a frame too large to keep
    bool in_multipart_ = false;  // dropping the rest of a multipart message
    bool dispatching_ = false;   // a message in in_ is being handed on
    bool oversize_logged_ = false;

    std::string handshake_out_;  // our greeting and READY, until written
    std::deque<OutFrame> out_;   // wire bytes, frame heads in place: sent once Ready
    size_t queued_bytes_ = 0;
    bool out_written_front_ = false;  // the front frame is partly written
    bool pong_queued_ = false;        // one PONG at a time, as libzmq
    size_t pong_ahead_ = 0;           // frames in front of it
    bool flush_posted_ = false;
    bool drop_logged_ = false;

    OnMessage on_message_;
    OnLost on_lost_;
    OnWritten on_written_;
    LifeToken life_;  // the loop's callbacks do nothing once the connection is gone
};

}  // namespace m2b
