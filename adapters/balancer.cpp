#include "adapters/balancer.h"

#include "base/life_token.h"
#include "base/log.h"

namespace m2b {

namespace {

class BalancedExchange final : public Exchange, private ExchangeSink {
public:
    BalancedExchange(BalancedGateway& gateway, const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                     ExchangeSink& sink)
        : gateway_(gateway), env_(env), body_(body), conn_id_(conn_id), sink_(sink), tried_(gateway.size(), false) {}

    ~BalancedExchange() override { release(); }

    // Failures found here are reported on the next turn, once the caller holds the handle.
    void begin() {
        if (!try_next()) report_later(failure_kind_, failure_why_);
    }

    void set_paused(bool paused) override {
        paused_ = paused;
        if (inner_) inner_->set_paused(paused);
    }

    void cancel() override {
        cancelled_ = true;
        if (inner_) inner_->cancel();
        release();
    }

private:
    // Starts the request on the next backend; false when none is left.
    bool try_next() {
        bool at_limit = false;
        int i = gateway_.pick(tried_, at_limit);
        if (i < 0) {
            if (failure_why_.empty()) {
                failure_kind_ = at_limit ? BackendFailure::Overloaded : BackendFailure::Unavailable;
                failure_why_ = at_limit ? "every live backend is at its limit of requests"
                                        : "no backend left to try";
            }
            return false;
        }
        tried_[static_cast<size_t>(i)] = true;
        current_ = i;
        ++gateway_.backend(static_cast<size_t>(i)).in_flight;
        // The previous attempt's exchange is still on the stack (its failure callback):
        // kept until the next attempt or the end of this one, never destroyed here.
        if (inner_) spent_ = std::move(inner_);
        starting_ = true;
        auto started = gateway_.backend(static_cast<size_t>(i)).gateway->start(env_, body_, conn_id_, *this);
        starting_ = false;
        inner_ = std::move(started);
        if (paused_ && inner_) inner_->set_paused(true);
        return true;
    }

    void release() {
        if (current_ < 0) return;
        --gateway_.backend(static_cast<size_t>(current_)).in_flight;
        current_ = -1;
    }

    void on_stdout(std::string_view bytes) override {
        if (!answered_) {
            answered_ = true;
            gateway_.answered(static_cast<size_t>(current_));
        }
        sink_.on_stdout(bytes);
    }
    void on_stderr(std::string_view bytes) override { sink_.on_stderr(bytes); }
    void on_complete() override {
        if (!answered_) gateway_.answered(static_cast<size_t>(current_));
        release();
        sink_.on_complete();
    }
    void on_failure(BackendFailure failure, std::string_view why) override {
        if (cancelled_) return;
        if (starting_) {
            // Reported from inside start(): moving on from here would start the next attempt
            // before this one's handle is ours. Handled on the next turn instead.
            gateway_.loop().post(life_.guard([this, failure, why = std::string(why)] { on_failure(failure, why); }));
            return;
        }
        size_t i = static_cast<size_t>(current_);
        release();
        std::string_view address = gateway_.backend(i).gateway->describe();
        std::string what = why.find(address) == std::string_view::npos ? std::string(address) + ": " + std::string(why)
                                                                        : std::string(why);
        // Only a connect that failed says the backend is down. A reset or a close before the
        // answer can be the request's own doing (a header too large for the backend), and one
        // client must not be able to take backends out.
        bool connect_failed = failure == BackendFailure::Refused || failure == BackendFailure::ConnectTimeout;
        if (connect_failed) gateway_.failed(i, what);
        // A failed connect: nothing reached that backend. Overloaded: it turned the request away
        // unrun (a full listen queue, FCGI_OVERLOADED). Either way another may take it.
        if (connect_failed || failure == BackendFailure::Overloaded) {
            failure_kind_ = failure;
            failure_why_ = what;
            if (try_next()) return;
        }
        sink_.on_failure(failure, what);
    }

    void report_later(BackendFailure kind, std::string why) {
        gateway_.loop().post(life_.guard([this, kind, why = std::move(why)] {
            if (!cancelled_) sink_.on_failure(kind, why);
        }));
    }

    BalancedGateway& gateway_;
    const CgiEnv& env_;
    const BodySource& body_;
    uint64_t conn_id_;
    ExchangeSink& sink_;
    LifeToken life_;
    std::vector<bool> tried_;
    std::unique_ptr<Exchange> inner_;
    std::unique_ptr<Exchange> spent_;  // the attempt before, refused
    int current_ = -1;  // the backend holding this request (its in_flight counts it); -1: none
    bool answered_ = false;
    bool starting_ = false;  // inside a backend's start()
    bool paused_ = false;
    bool cancelled_ = false;
    BackendFailure failure_kind_ = BackendFailure::Unavailable;
    std::string failure_why_;
};

}  // namespace

BalancedGateway::BalancedGateway(Loop& loop, std::vector<std::unique_ptr<Gateway>> backends, Options options)
    : loop_(loop), options_(options) {
    for (auto& gateway : backends) {
        if (!description_.empty()) description_ += " ";
        description_ += gateway->describe();
        backends_.push_back(Backend{.gateway = std::move(gateway)});
    }
}

BalancedGateway::~BalancedGateway() = default;

int BalancedGateway::pick(const std::vector<bool>& tried, bool& at_limit) {
    auto now = Loop::now();
    int best = -1, best_down = -1;
    for (size_t k = 0; k < backends_.size(); ++k) {
        size_t i = (next_ + k) % backends_.size();
        const Backend& b = backends_[i];
        if (tried[i]) continue;
        if (b.in_flight >= options_.per_backend_limit) {
            at_limit = true;
            continue;
        }
        if (b.down_until <= now) {
            if (best < 0 || b.in_flight < backends_[static_cast<size_t>(best)].in_flight) best = static_cast<int>(i);
        } else if (best_down < 0 || b.down_until < backends_[static_cast<size_t>(best_down)].down_until) {
            best_down = static_cast<int>(i);
        }
    }
    next_ = (next_ + 1) % backends_.size();
    return best >= 0 ? best : best_down;  // all taken out: the first to come back is tried anyway
}

void BalancedGateway::failed(size_t i, const std::string& why) {
    Backend& b = backends_[i];
    // Requests that were in flight together fail together: one failure, not one per request.
    if (Loop::now() < b.down_until) return;
    b.backoff = b.backoff.count() == 0 ? options_.first_backoff : std::min(b.backoff * 2, options_.max_backoff);
    b.down_until = Loop::now() + b.backoff;
    log::warn("backend ", b.gateway->describe(), " taken out for ", b.backoff.count(), " ms: ", why);
}

void BalancedGateway::answered(size_t i) {
    Backend& b = backends_[i];
    if (b.backoff.count() != 0) log::info("backend ", b.gateway->describe(), " answers again");
    b.backoff = std::chrono::milliseconds(0);
    b.down_until = {};
}

size_t BalancedGateway::idle_connections() const {
    size_t n = 0;
    for (const auto& b : backends_) n += b.gateway->idle_connections();
    return n;
}

std::unique_ptr<Exchange> BalancedGateway::start(const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                                                 ExchangeSink& sink) {
    auto exchange = std::make_unique<BalancedExchange>(*this, env, body, conn_id, sink);
    exchange->begin();
    return exchange;
}

}  // namespace m2b
