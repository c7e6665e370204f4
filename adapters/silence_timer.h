// The backend timeout of product.md: how long a backend may stay silent
// (connect, then between bytes) before the request fails with 504. Time spent
// paused, while the client side drains, is not the backend's silence.
// Only progress counts: response bytes and request-body bytes the backend
// took. Its stderr and FastCGI management records do not, or a backend that
// drips one stderr byte a second would hold its slot forever.
#pragma once

#include <chrono>
#include <functional>

#include "base/loop.h"

namespace m2b {

class SilenceTimer {
public:
    SilenceTimer(Loop& loop, std::chrono::milliseconds timeout, std::function<void()> on_silence)
        : loop_(loop), timeout_(timeout), on_silence_(std::move(on_silence)) {}
    ~SilenceTimer() { stop(); }
    SilenceTimer(const SilenceTimer&) = delete;
    SilenceTimer& operator=(const SilenceTimer&) = delete;

    void start() {
        last_activity_ = Loop::now();
        arm();
    }
    void activity() { last_activity_ = Loop::now(); }  // progress, as above
    void set_paused(bool paused) {
        paused_ = paused;
        last_activity_ = Loop::now();
    }
    void stop() {
        if (timer_) loop_.cancel(timer_);
        timer_ = 0;
    }
    std::chrono::milliseconds timeout() const { return timeout_; }

private:
    // One timer per request, re-armed for the remainder instead of on every byte.
    void arm() {
        auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(last_activity_ + timeout_ - Loop::now());
        if (delay.count() < 1) delay = std::chrono::milliseconds(1);
        timer_ = loop_.after(delay, [this] {
            timer_ = 0;
            if (paused_) last_activity_ = Loop::now();
            if (Loop::now() - last_activity_ >= timeout_) {
                on_silence_();  // may destroy nothing but the exchange's I/O; never this timer's owner
                return;
            }
            arm();
        });
    }

    Loop& loop_;
    std::chrono::milliseconds timeout_;
    std::function<void()> on_silence_;
    Loop::Clock::time_point last_activity_ = Loop::now();
    bool paused_ = false;
    Loop::TimerId timer_ = 0;
};

}  // namespace m2b
