#include "bridge/m2_sockets.h"

#include "bridge/zmtp.h"

namespace m2b {

Mongrel2Sockets::Mongrel2Sockets(Loop& loop, const std::string& send_spec, const std::string& recv_spec)
    : loop_(loop), requests_(loop, send_spec, "PULL", {"PUSH"}), replies_(loop, recv_spec, "PUB", {"SUB", "XSUB"}) {
    requests_.set_callbacks(
        [this](std::string_view message) {
            if (on_message_) on_message_(message);
        },
        [this](std::string_view why) { server_lost(requests_, replies_, why); }, nullptr);
    // What a SUB sends (its subscriptions) is not for us: it filters what it receives itself.
    replies_.set_callbacks(nullptr, [this](std::string_view why) { server_lost(replies_, requests_, why); }, [this] {
        if (!waiters_.empty() && replies_.queued_bytes() <= wake_below_ && !wake_posted_) {
            wake_posted_ = true;
            loop_.post(life_.guard([this] { wake_waiters(); }));
        }
    });
    replies_.start();
    requests_.start();
}

// Closed here, while the members their callbacks use are still alive.
Mongrel2Sockets::~Mongrel2Sockets() {
    requests_.close();
    replies_.close();
}

// Mongrel2 restarted after a crash hands out connection ids from 1 again,
// without a word: the only sign is a connection dropping. Either one drops the
// other as well (a request still unread from the old server would otherwise be
// answered to the new one), and everything in flight is cancelled.
void Mongrel2Sockets::server_lost(ZmtpConnection& lost, ZmtpConnection& other, std::string_view why) {
    other.restart();
    if (on_server_lost_) on_server_lost_("at " + lost.endpoint() + " disconnected (" + std::string(why) + ")");
}

void Mongrel2Sockets::set_receiver(OnMessage on_message, OnServerLost on_server_lost) {
    on_message_ = std::move(on_message);
    on_server_lost_ = std::move(on_server_lost);
}

void Mongrel2Sockets::send(std::string_view message) { replies_.send(message); }

void Mongrel2Sockets::send(std::string_view envelope, std::string_view body) {
    OutFrame frame(zmtp::kMaxFrameHead + envelope.size(), body.size());
    frame.append(body);
    frame.prepend(envelope);
    replies_.send(std::move(frame));
}

void Mongrel2Sockets::send(std::string_view envelope, OutFrame frame) {
    if (!frame.prepend(envelope, zmtp::kMaxFrameHead)) {  // a sender longer than the room left for it
        send(envelope, frame.view());
        return;
    }
    replies_.send(std::move(frame));
}

void Mongrel2Sockets::when_queued_below(size_t below, std::function<void()> ready) {
    waiters_.push_back(std::move(ready));
    wake_below_ = below;
    // Never from inside the call: a waiter whose mark is met already runs next turn.
    if (replies_.queued_bytes() <= below && !wake_posted_) {
        wake_posted_ = true;
        loop_.post(life_.guard([this] { wake_waiters(); }));
    }
}

void Mongrel2Sockets::wake_waiters() {
    wake_posted_ = false;
    auto waiting = std::move(waiters_);
    waiters_.clear();
    for (auto& ready : waiting) ready();
}

void Mongrel2Sockets::stop_receiving() {
    // Mongrel2 then pushes to the handlers still connected (or keeps the
    // requests until one connects) instead of into a queue no one reads.
    requests_.close();
}

}  // namespace m2b
