// What the handler needs from the Mongrel2 side: a way to send a message and
// to stop taking requests. Mongrel2Sockets implements it; tests and the
// handler's fuzz target put a recorder in its place.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "bridge/out_frame.h"

namespace m2b {

class Mongrel2Link {
public:
    virtual ~Mongrel2Link() = default;
    // One single-frame message for Mongrel2's SUB socket.
    virtual void send(std::string_view message) = 0;
    // The same, given as an envelope (reply_envelope()) and a body: the body is
    // copied once, into the frame itself, not first into a joined string.
    virtual void send(std::string_view envelope, std::string_view body) {
        std::string message;
        message.reserve(envelope.size() + body.size());
        message += envelope;
        message += body;
        send(message);
    }
    // The same, with the body already in a frame with room for the envelope in
    // front: Mongrel2Sockets writes that block itself, with no copy. Pure, so
    // that no link in between falls back to a copy without saying so.
    virtual void send(std::string_view envelope, OutFrame frame) = 0;
    // Shutdown: no more requests are read; replies still go out.
    virtual void stop_receiving() = 0;
    // Bytes of messages queued for Mongrel2 and not yet written to its socket.
    // A sender that can wait (a reply, a delivery's fan-out) keeps this bounded.
    virtual size_t queued_bytes() const = 0;
    // Calls `ready` on a later loop turn, once queued_bytes() <= `below`.
    virtual void when_queued_below(size_t below, std::function<void()> ready) = 0;
};

}  // namespace m2b
