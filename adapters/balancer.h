// Several backends behind one handler (`m2bridge fastcgi ADDR ADDR ...`):
// each request goes to the least busy live backend. One whose connect fails
// (refused, or not done within --timeout) is taken out for a back-off that
// doubles with every failure in a row (1 s up to 30 s); once it ends, the next
// request probes it, and an answer brings it back. A request moves to another
// backend only when the first never ran it: its connect failed, or the backend
// turned it away as overloaded. A request that reached a backend's app is
// never sent to a second one.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "adapters/gateway.h"
#include "base/loop.h"

namespace m2b {

class BalancedGateway : public Gateway {
public:
    struct Options {
        size_t per_backend_limit = 64;  // requests in flight on one backend; beyond, 503
        std::chrono::milliseconds first_backoff{1000};
        std::chrono::milliseconds max_backoff{30000};
    };

    BalancedGateway(Loop& loop, std::vector<std::unique_ptr<Gateway>> backends, Options options);
    ~BalancedGateway() override;

    std::unique_ptr<Exchange> start(const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                                    ExchangeSink& sink) override;
    std::string_view describe() const override { return description_; }
    size_t idle_connections() const override;

    // For tests and metrics: requests in flight on backend i, and whether it is taken out now.
    size_t in_flight(size_t i) const { return backends_.at(i).in_flight; }
    bool taken_out(size_t i) const { return Loop::now() < backends_.at(i).down_until; }

    // Used by exchanges.
    struct Backend {
        std::unique_ptr<Gateway> gateway;
        size_t in_flight = 0;
        Loop::Clock::time_point down_until{};  // taken out until then
        std::chrono::milliseconds backoff{0};  // the last back-off; 0 while healthy
    };
    // The least busy backend not in `tried` and under its limit, live ones
    // first, else the one whose back-off ends first. -1: none; `at_limit` says
    // whether one was left out only for its limit.
    int pick(const std::vector<bool>& tried, bool& at_limit);
    Backend& backend(size_t i) { return backends_[i]; }
    size_t size() const { return backends_.size(); }
    void failed(size_t i, const std::string& why);
    void answered(size_t i);
    Loop& loop() { return loop_; }

private:
    Loop& loop_;
    std::vector<Backend> backends_;
    Options options_;
    std::string description_;
    size_t next_ = 0;  // where ties start: equal load goes round
};

}  // namespace m2b
