#include "bridge/zmtp_connection.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "base/log.h"
#include "bridge/zmtp.h"

namespace m2b {

namespace {
constexpr size_t kInputChunk = 64 * 1024;  // the input buffer, and what one read takes, between large messages
constexpr int kWriteBatch = 64;            // frames per sendmsg
constexpr size_t kFrameOverhead = 64;      // what malloc and the queue add to a frame, roughly

// The addresses of an endpoint (zmtp::parse_endpoint's grammar).
template <typename Address>
std::vector<Address> resolve(const std::string& endpoint, bool& is_tcp) {
    zmtp::Endpoint parsed;
    std::string why;
    if (!zmtp::parse_endpoint(endpoint, parsed, why)) throw std::runtime_error(endpoint + ": " + why);
    std::vector<Address> out;
    if (parsed.ipc) {
        const std::string& path = parsed.path;
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        std::memcpy(un.sun_path, path.data(), path.size());
        bool abstract = path[0] == '@';  // Linux's abstract namespace, as libzmq reads it
        if (abstract) un.sun_path[0] = '\0';
        Address a;
        std::memcpy(&a.storage, &un, sizeof un);
        a.size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
        out.push_back(a);
        is_tcp = false;
        return out;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    hints.ai_family = AF_INET;  // libzmq's default (ZMQ_IPV6 off): "localhost" is 127.0.0.1
    if (parsed.ipv6_literal) {
        hints.ai_family = AF_INET6;
        hints.ai_flags |= AI_NUMERICHOST;
    }
    addrinfo* found = nullptr;
    // Blocking, once: at start and at a reload that names a new endpoint.
    int rc = getaddrinfo(parsed.host.c_str(), parsed.port.c_str(), &hints, &found);
    if (rc != 0) throw std::runtime_error(endpoint + ": " + gai_strerror(rc));
    for (addrinfo* ai = found; ai; ai = ai->ai_next) {
        Address a;
        std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
        a.size = ai->ai_addrlen;
        out.push_back(a);
    }
    freeaddrinfo(found);
    is_tcp = true;
    return out;
}
}  // namespace

ZmtpConnection::ZmtpConnection(Loop& loop, std::string endpoint, std::string socket_type,
                               std::vector<std::string> peer_types)
    : loop_(loop), endpoint_(std::move(endpoint)), socket_type_(std::move(socket_type)),
      peer_types_(std::move(peer_types)) {
    addresses_ = resolve<Address>(endpoint_, is_tcp_);
}

ZmtpConnection::~ZmtpConnection() {
    // A destructor does not call out: its owner may be half destroyed.
    on_message_ = nullptr;
    on_lost_ = nullptr;
    on_written_ = nullptr;
    close();
}

void ZmtpConnection::set_callbacks(OnMessage on_message, OnLost on_lost, OnWritten on_written) {
    on_message_ = std::move(on_message);
    on_lost_ = std::move(on_lost);
    on_written_ = std::move(on_written);
}

void ZmtpConnection::start() {
    if (state_ == State::Waiting && !fd_ && timer_ == 0) attempt();
}

void ZmtpConnection::close() {
    if (state_ == State::Closed) return;
    tear_down();
    state_ = State::Closed;
}

void ZmtpConnection::restart() {
    if (state_ == State::Closed || state_ == State::Waiting) return;
    tear_down();
    retry_later();
}

void ZmtpConnection::attempt() {
    timer_ = 0;
    const Address& to = addresses_[next_address_];
    fd_ = UniqueFd(::socket(to.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd_) return drop(std::string("socket: ") + strerror(errno));
    if (is_tcp_) {
        int one = 1;  // replies are written whole: nothing to gain from Nagle
        (void)setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    greeting_seen_ = false;
    // EAGAIN from a unix socket is a full backlog, not a connect in progress.
    if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&to.storage), to.size) != 0 && errno != EINPROGRESS)
        return drop(strerror(errno));
    if (!loop_.watch(fd_.get(), EPOLLIN | EPOLLOUT, life_.guard([this](uint32_t events) { on_events(events); })))
        return drop(std::string("epoll: ") + strerror(errno));
    writable_wanted_ = true;
    state_ = State::Connecting;
    timer_ = loop_.after(kHandshakeDeadline, life_.guard([this] {
        timer_ = 0;
        if (state_ == State::Connecting || state_ == State::Handshaking) drop("no handshake within 30 s");
    }));
}

void ZmtpConnection::on_events(uint32_t events) {
    if (state_ == State::Connecting) {
        finish_connect();
        if (state_ != State::Handshaking) return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_some();
    if ((events & EPOLLOUT) && (state_ == State::Handshaking || state_ == State::Ready)) flush();
}

void ZmtpConnection::finish_connect() {
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    if (error == EINPROGRESS) return;
    if (error != 0) return drop(strerror(error));
    state_ = State::Handshaking;
    // Both halves of our handshake at once: with NULL there is nothing to wait
    // for. Messages wait for the peer's READY: libzmq drops a connection that
    // sends one before it has finished its own handshake.
    handshake_out_ = zmtp::greeting() + zmtp::ready_command(socket_type_);
    flush();
}

void ZmtpConnection::read_some() {
    if (!in_) {
        in_ = std::make_unique_for_overwrite<char[]>(kInputChunk);
        in_capacity_ = kInputChunk;
    }
    // Little room at the end: what is left of the input moves to the front.
    if (in_capacity_ - in_end_ < kInputChunk / 4 && in_begin_ > 0) make_room(in_capacity_);
    if (in_end_ == in_capacity_) make_room(in_capacity_ + kInputChunk);
    // One chunk a read, or what a large frame still needs: a turn of the loop
    // hands on a bounded number of messages.
    size_t unread = in_end_ - in_begin_;
    size_t want = std::max(kInputChunk, wanted_ > unread ? wanted_ - unread : 0);
    ssize_t n = ::recv(fd_.get(), in_.get() + in_end_, std::min(want, in_capacity_ - in_end_), MSG_DONTWAIT);
    if (n == 0) return drop("closed by Mongrel2");
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return drop(strerror(errno));
    }
    in_end_ += static_cast<size_t>(n);
    process_input();
}

// Moves the unread input to the front of a buffer of at least `bytes`.
void ZmtpConnection::make_room(size_t bytes) {
    size_t unread = in_end_ - in_begin_;
    if (bytes <= in_capacity_) {
        std::memmove(in_.get(), in_.get() + in_begin_, unread);
    } else {
        size_t capacity = (bytes + 4095) / 4096 * 4096;
        auto bigger = std::make_unique_for_overwrite<char[]>(capacity);
        if (unread) std::memcpy(bigger.get(), in_.get() + in_begin_, unread);
        in_ = std::move(bigger);
        in_capacity_ = capacity;
    }
    in_begin_ = 0;
    in_end_ = unread;
}

// Takes every whole frame in the buffer.
void ZmtpConnection::process_input() {
    if (state_ == State::Handshaking && !take_handshake()) return;
    wanted_ = 0;
    while (state_ == State::Ready) {
        if (skipping_ > 0) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(skipping_, in_end_ - in_begin_));
            in_begin_ += n;
            skipping_ -= n;
            if (skipping_ > 0) break;
            continue;
        }
        std::string_view left(in_.get() + in_begin_, in_end_ - in_begin_);
        zmtp::FrameHead head;
        zmtp::Parse parsed = zmtp::parse_frame_head(left, head);
        if (parsed == zmtp::Parse::Bad) return drop("malformed frame");
        if (parsed == zmtp::Parse::NeedMore) break;
        if (head.size > kMaxMessage) {
            if (!oversize_logged_)
                log::error("a ", head.size, "-byte message from Mongrel2 at ", endpoint_, " skipped: larger than ",
                           kMaxMessage, " bytes (further ones are skipped without a word)");
            oversize_logged_ = true;
            in_begin_ += head.head_size;
            skipping_ = head.size;
            in_multipart_ = head.more;
            continue;
        }
        size_t whole = head.head_size + static_cast<size_t>(head.size);
        if (left.size() < whole) {
            // Not all here. The buffer grows with what arrives (at most
            // doubling), not with what the head announces.
            wanted_ = whole;
            if (in_begin_ + whole > in_capacity_) {
                size_t grown = std::min(whole, std::max(in_capacity_ * 2, kInputChunk));
                make_room(std::max(grown, in_capacity_));
            }
            break;
        }
        std::string_view body = left.substr(head.head_size, static_cast<size_t>(head.size));
        in_begin_ += whole;
        if (head.command) {
            take_command(body);
        } else if (head.more || in_multipart_) {
            if (!in_multipart_) log::warn("multipart message from Mongrel2 at ", endpoint_, " dropped");
            in_multipart_ = head.more;
        } else if (on_message_) {
            dispatching_ = true;
            on_message_(body);  // may close us: the loop's condition looks again
            dispatching_ = false;
        }
    }
    if (in_begin_ == in_end_) {
        in_begin_ = in_end_ = 0;
        // A large message's buffer goes back once it is taken.
        if (in_capacity_ > 4 * kInputChunk) {
            in_.reset();
            in_capacity_ = 0;
        }
    }
}

// The peer's greeting, then its READY: true once Ready.
bool ZmtpConnection::take_handshake() {
    std::string_view left(in_.get() + in_begin_, in_end_ - in_begin_);
    if (!greeting_seen_) {
        std::string why;
        zmtp::Parse parsed = zmtp::check_greeting(left, why);
        if (parsed == zmtp::Parse::Bad) {
            drop(why);
            return false;
        }
        if (parsed == zmtp::Parse::NeedMore) return false;
        greeting_seen_ = true;
        in_begin_ += zmtp::kGreetingSize;
        left.remove_prefix(zmtp::kGreetingSize);
    }
    zmtp::FrameHead head;
    zmtp::Parse parsed = zmtp::parse_frame_head(left, head);
    if (parsed == zmtp::Parse::NeedMore) return false;
    if (parsed == zmtp::Parse::Bad || !head.command || head.size > 4096) {
        drop("no READY command in the handshake");
        return false;
    }
    if (left.size() - head.head_size < head.size) return false;  // 4 KiB fits the buffer
    std::string_view body = left.substr(head.head_size, static_cast<size_t>(head.size));
    std::string_view type;
    if (!zmtp::ready_socket_type(body, type)) {
        drop(zmtp::command_name(body) == "ERROR" ? "the peer refused us" : "no READY command in the handshake");
        return false;
    }
    if (std::find(peer_types_.begin(), peer_types_.end(), type) == peer_types_.end()) {
        drop("the peer is a " + std::string(type) + " socket, not Mongrel2's " + peer_types_.front());
        return false;
    }
    in_begin_ += head.head_size + body.size();
    loop_.cancel(timer_);
    timer_ = 0;
    state_ = State::Ready;
    if (failures_ > 0) log::info("connected to Mongrel2 at ", endpoint_);
    failures_ = 0;
    drop_logged_ = false;
    oversize_logged_ = false;
    return true;
}

void ZmtpConnection::take_command(std::string_view body) {
    std::string_view name = zmtp::command_name(body);
    if (name == "PING") {
        // One PONG waits at a time: a peer that pings and does not read gets no more.
        if (pong_queued_) return;
        pong_queued_ = true;
        queue_front(zmtp::pong_for(body));
    } else if (name == "ERROR") {
        drop("the peer sent ERROR");
    }
    // SUBSCRIBE, CANCEL and the rest: a SUB filters what it receives itself.
}

bool ZmtpConnection::accepting() {
    if (state_ == State::Ready) return true;
    if (!drop_logged_ && state_ != State::Closed) {
        log::warn("Mongrel2 at ", endpoint_, " is not connected: replies are dropped until it is");
        drop_logged_ = true;
    }
    return false;
}

void ZmtpConnection::send(OutFrame frame) {
    if (!accepting()) return;
    char head[zmtp::kMaxFrameHead];
    size_t head_size = zmtp::write_frame_head(head, frame.size());
    if (!frame.prepend(std::string_view(head, head_size))) {
        OutFrame copy(zmtp::kMaxFrameHead, frame.size());
        copy.append(frame.view());
        copy.prepend(std::string_view(head, head_size));
        frame = std::move(copy);
    }
    frame.shrink_to_fit();
    queued_bytes_ += frame.footprint() + kFrameOverhead;
    out_.push_back(std::move(frame));
    if (!flush_posted_ && !writable_wanted_) {
        // Written once this turn's events are handled: a fan-out or several
        // replies of one turn leave in one system call.
        flush_posted_ = true;
        loop_.post(life_.guard([this] {
            flush_posted_ = false;
            if (state_ == State::Ready) flush();
        }));
    }
}

void ZmtpConnection::send(std::string_view message) {
    if (!accepting()) return;
    OutFrame frame(zmtp::kMaxFrameHead, message.size());
    frame.append(message);
    send(std::move(frame));
}

void ZmtpConnection::queue_front(std::string bytes) {
    OutFrame frame(0, bytes.size());
    frame.append(bytes);
    queued_bytes_ += frame.footprint() + kFrameOverhead;
    // Behind a frame already half written, never inside it.
    auto at = out_.begin();
    if (at != out_.end() && out_written_front_) ++at;
    pong_ahead_ = static_cast<size_t>(at - out_.begin());
    out_.insert(at, std::move(frame));
    if (!writable_wanted_) flush();
}

void ZmtpConnection::flush() {
    while (!handshake_out_.empty() && fd_) {
        ssize_t written = ::send(fd_.get(), handshake_out_.data(), handshake_out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (written < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return want_writable(true);
            return drop(strerror(errno));
        }
        handshake_out_.erase(0, static_cast<size_t>(written));
    }
    if (state_ != State::Ready) return want_writable(false);
    size_t before = queued_bytes_;
    while (!out_.empty() && fd_) {
        iovec iov[kWriteBatch];
        int n = 0;
        for (auto it = out_.begin(); it != out_.end() && n < kWriteBatch; ++it, ++n) {
            std::string_view bytes = it->view();
            iov[n] = {const_cast<char*>(bytes.data()), bytes.size()};
        }
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = static_cast<size_t>(n);
        ssize_t written = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (written < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want_writable(true);
                break;
            }
            return drop(strerror(errno));
        }
        auto left = static_cast<size_t>(written);
        while (left > 0) {
            OutFrame& front = out_.front();
            if (left < front.size()) {
                front.consume(left);
                out_written_front_ = true;
                break;
            }
            left -= front.size();
            queued_bytes_ -= front.footprint() + kFrameOverhead;
            out_.pop_front();
            if (pong_queued_) {
                if (pong_ahead_ == 0) pong_queued_ = false;  // that was the PONG
                else --pong_ahead_;
            }
            out_written_front_ = false;
        }
    }
    if (out_.empty()) want_writable(false);
    if (queued_bytes_ < before && on_written_) on_written_();
}

void ZmtpConnection::want_writable(bool yes) {
    if (writable_wanted_ == yes || !fd_) return;
    writable_wanted_ = yes;
    // A watch epoll refuses to change would leave the queue stalled for good.
    if (!loop_.set_events(fd_.get(), yes ? uint32_t{EPOLLIN | EPOLLOUT} : uint32_t{EPOLLIN}))
        drop(std::string("epoll: ") + strerror(errno));
}

void ZmtpConnection::forget_queue() {
    bool had = queued_bytes_ > 0;
    handshake_out_.clear();
    out_.clear();
    out_written_front_ = false;
    pong_queued_ = false;
    queued_bytes_ = 0;
    in_begin_ = in_end_ = 0;
    wanted_ = 0;
    skipping_ = 0;
    in_multipart_ = false;
    // A large input buffer goes; any buffer stays while a message in it is being handed on.
    if (!dispatching_ && in_capacity_ > kInputChunk) {
        in_.reset();
        in_capacity_ = 0;
    }
    if (had && on_written_) on_written_();  // whoever waits on the queue may go on
}

void ZmtpConnection::tear_down() {
    if (fd_) loop_.unwatch(fd_.get());
    fd_.reset();
    writable_wanted_ = false;
    loop_.cancel(timer_);
    timer_ = 0;
    forget_queue();
}

void ZmtpConnection::retry_later() {
    state_ = State::Waiting;
    timer_ = loop_.after(kReconnect, life_.guard([this] { attempt(); }));
}

// The connection, or the attempt at one, is over; another follows in 100 ms.
// What was queued goes too, as with libzmq: replies were for this incarnation
// of Mongrel2, and a restarted one hands out the same connection ids to
// other clients.
void ZmtpConnection::drop(std::string_view why) {
    if (state_ == State::Closed) return;
    bool was_ready = state_ == State::Ready;
    tear_down();
    retry_later();
    if (was_ready) {
        failures_ = 1;  // the next connection is news
        if (on_lost_) on_lost_(why);
        return;
    }
    next_address_ = (next_address_ + 1) % addresses_.size();
    // Mongrel2 often starts after its handlers: the first refusal is news,
    // one that lasts is a problem (every 100 ms, 50 is 5 s).
    ++failures_;
    if (failures_ == 1)
        log::info("waiting for Mongrel2 at ", endpoint_, ": ", why);
    else if (failures_ == 50)
        log::warn("cannot connect to Mongrel2 at ", endpoint_, " for 5 s: ", why, " (trying again every ",
                  kReconnect.count(), " ms)");
}

}  // namespace m2b
