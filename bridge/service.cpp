#include "bridge/service.h"

#include <algorithm>

#include "adapters/fastcgi/spawner.h"
#include "bridge/access_log.h"
#include "bridge/handler.h"
#include "base/log.h"
#include "bridge/m2_sockets.h"
#include "bridge/metrics_server.h"
#include "bridge/modes.h"

namespace m2b {

// One handler with its backend. It is also the handler's Mongrel2Link: a
// reload can put a new handler on the same sockets, and stopping one of them
// must not stop the other.
struct HandlerRuntime final : Mongrel2Link {
    enum class State { Running, Draining };

    HandlerConfig config;  // resolved; for spawn, backend is the spawner's socket
    std::string identity;  // the config as read: equal text means an unchanged handler
    Mongrel2Sockets* sockets = nullptr;
    State state = State::Running;
    HandlerStats* stats = nullptr;
    // Destroyed in reverse: the handler before the gateway it uses, the
    // gateway before the apps it talks to.
    std::unique_ptr<FastcgiSpawner> spawner;
    std::unique_ptr<Gateway> gateway;
    std::unique_ptr<Handler> handler;

    void send(std::string_view message) override { sockets->send(message); }
    void send(std::string_view envelope, std::string_view body) override { sockets->send(envelope, body); }
    void send(std::string_view envelope, OutFrame frame) override { sockets->send(envelope, std::move(frame)); }
    void stop_receiving() override { state = State::Draining; }
    size_t queued_bytes() const override { return sockets->queued_bytes(); }
    void when_queued_below(size_t below, std::function<void()> ready) override {
        sockets->when_queued_below(below, std::move(ready));
    }
};

// One Mongrel2 Handler's two sockets, the handler serving it, and handlers of
// an earlier config still finishing their requests on the same sockets.
struct Endpoint {
    std::string send_spec, recv_spec;
    std::unique_ptr<Mongrel2Sockets> sockets;  // declared first: destroyed after the runtimes using it
    std::unique_ptr<HandlerRuntime> current;
    std::vector<std::unique_ptr<HandlerRuntime>> draining;
    // Removed, idle, and waiting for its last replies to be written (at most
    // kLinger, as libzmq's linger) before its sockets close.
    bool lingering = false;
    std::shared_ptr<bool> linger_over = std::make_shared<bool>(false);
    std::shared_ptr<bool> queue_watched = std::make_shared<bool>(false);  // a queue waiter is registered

    bool matches(const HandlerConfig& h) const { return h.send_spec == send_spec && h.recv_spec == recv_spec; }
    bool idle() const { return !current && draining.empty(); }

    // Messages about a connection an old handler still serves (its next
    // pipelined request, credits, its disconnect) go to that handler.
    void dispatch(std::string_view message) {
        uint64_t conn = 0;
        if (!draining.empty() && conn_id_of(message, conn))
            for (auto& old : draining)
                if (old->handler->knows(conn)) {
                    old->handler->on_message(message);
                    return;
                }
        if (current && current->state == HandlerRuntime::State::Running) current->handler->on_message(message);
    }
    void server_lost(std::string_view why) {
        for (auto& old : draining) old->handler->on_server_lost(why);
        if (current) current->handler->on_server_lost(why);
    }
    // "UUID ID PATH ..." — the id without parsing the rest.
    static bool conn_id_of(std::string_view m, uint64_t& id) {
        size_t space = m.find(' ');
        if (space == std::string_view::npos) return false;
        id = 0;
        size_t i = space + 1, digits = 0;
        for (; i < m.size() && m[i] >= '0' && m[i] <= '9' && digits < 19; ++i, ++digits) id = id * 10 + (m[i] - '0');
        return digits > 0;
    }
};

Service::Service(Loop& loop) : loop_(loop) {}

Service::~Service() {
    // Handlers first: the exchanges they cancel are destroyed by posted tasks,
    // which must run while the gateways those exchanges use still exist.
    for (const auto* list : {&endpoints_, &closing_endpoints_})
        for (const auto& e : *list) {
            if (e->current) e->current->handler.reset();
            for (auto& old : e->draining) old->handler.reset();
        }
    loop_.run_posted();
    closing_endpoints_.clear();
    endpoints_.clear();
    stopping_.clear();
}

AccessLog* Service::access_log_for(const std::string& path) {
    if (path.empty()) return nullptr;
    auto& log = access_logs_[path];
    if (!log) {
        log = std::make_unique<AccessLog>(path);
        std::string error = log->reopen();
        if (!error.empty()) {
            access_logs_.erase(path);  // the next reload tries again
            throw ConfigError("access_log: " + error);
        }
    }
    return log.get();
}

std::unique_ptr<HandlerRuntime> Service::make_runtime(const HandlerConfig& h) {
    auto rt = std::make_unique<HandlerRuntime>();
    rt->config = h;
    rt->identity = to_toml(h);
    HandlerConfig& c = rt->config;
    if (c.spawns()) {
        rt->spawner = std::make_unique<FastcgiSpawner>(
            loop_, SpawnOptions{.command = c.spawn_command, .instances = c.spawn_instances, .name = c.name});
        std::string error = rt->spawner->start();
        if (!error.empty()) throw ConfigError("handler " + c.name + ": spawn: " + error);
        c.backend = rt->spawner->address();
    }
    try {
        rt->gateway = make_gateway(loop_, c);
    } catch (const std::invalid_argument& e) {
        throw ConfigError("handler " + c.name + ": " + e.what());
    }
    auto& stats = stats_[c.name];
    if (!stats) stats = std::make_unique<HandlerStats>();
    stats->name = c.name;
    stats->backend = c.spawns() ? "spawn" : mode_info(c.mode).name;
    rt->stats = stats.get();
    return rt;
}

void Service::start(const ServiceConfig& config) {
    config_ = config;
    reload(config);
}

// Everything new is built first; only when all of it stands are old pieces
// swapped out, so a failure leaves the running config as it was.
void Service::reload(const ServiceConfig& next) {
    struct Placement {
        Endpoint* endpoint;                   // existing endpoint, or null
        std::unique_ptr<Endpoint> fresh;      // new endpoint
        std::unique_ptr<HandlerRuntime> runtime;
    };
    std::vector<Placement> placements;
    for (const HandlerConfig& h : next.handlers) {
        auto it = std::find_if(endpoints_.begin(), endpoints_.end(), [&](const auto& e) { return e->matches(h); });
        if (it != endpoints_.end() && (*it)->current && (*it)->current->identity == to_toml(h)) continue;  // unchanged
        Placement p{it != endpoints_.end() ? it->get() : nullptr, nullptr, nullptr};
        if (!p.endpoint) {
            p.fresh = std::make_unique<Endpoint>();
            p.fresh->send_spec = h.send_spec;
            p.fresh->recv_spec = h.recv_spec;
            try {
                p.fresh->sockets = std::make_unique<Mongrel2Sockets>(loop_, h.send_spec, h.recv_spec);
            } catch (const std::exception& e) {
                throw ConfigError("handler " + h.name + ": " + e.what());
            }
        }
        p.runtime = make_runtime(h);
        placements.push_back(std::move(p));
    }
    // Access logs of the new config exist now or the reload fails here.
    std::map<std::string, AccessLog*> logs;
    for (const HandlerConfig& h : next.handlers) logs[h.name] = access_log_for(h.access_log);

    std::unique_ptr<MetricsServer> metrics;
    if (next.metrics != config_.metrics || (!next.metrics.empty() && !metrics_)) {
        if (!next.metrics.empty()) {
            metrics = std::make_unique<MetricsServer>(loop_, [this] { return metrics_text(); });
            std::string error = metrics->listen(next.metrics);
            if (!error.empty()) throw ConfigError("metrics: " + error);
        }
        metrics_ = std::move(metrics);
    }

    // Commit.
    for (auto& p : placements) {
        Endpoint* e = p.endpoint;
        if (!e) {
            e = p.fresh.get();
            Endpoint* raw = e;
            e->sockets->set_receiver([raw](std::string_view m) { raw->dispatch(m); },
                                     [raw](std::string_view why) { raw->server_lost(why); });
            endpoints_.push_back(std::move(p.fresh));
        }
        HandlerRuntime& rt = *p.runtime;
        rt.sockets = e->sockets.get();
        rt.handler = std::make_unique<Handler>(loop_, rt.config, *rt.gateway, rt, logs[rt.config.name]);
        HandlerStats* stats = rt.stats;
        rt.handler->set_observer([stats](int status, double seconds) { stats->observe(status, seconds); });
        if (e->current) {
            log::info("handler ", e->current->config.name, " changed; the old one finishes its requests");
            e->current->handler->hand_over_idle_holds(*rt.handler);
            retire(e, std::move(e->current));
        }
        log::info("handler ", rt.config.name, ": ", mode_info(rt.config.mode).name, " ", rt.config.mode == Mode::Cgi ? std::string_view(rt.config.backend) : rt.gateway->describe(),
                  " <- ", e->send_spec, " -> ", e->recv_spec);
        e->current = std::move(p.runtime);
    }
    for (size_t i = 0; i < endpoints_.size();) {
        Endpoint& e = *endpoints_[i];
        bool kept = std::any_of(next.handlers.begin(), next.handlers.end(), [&](const auto& h) { return e.matches(h); });
        if (kept) {
            ++i;
            continue;
        }
        log::info("handler ", e.current ? e.current->config.name : "?", " removed; it finishes its requests");
        auto gone = std::move(endpoints_[i]);
        endpoints_.erase(endpoints_.begin() + static_cast<long>(i));
        retire_endpoint(std::move(gone));
    }
    // Access logs no handler writes to any more are closed; while old handlers
    // still drain (they may write to any of them) all are kept.
    bool draining = !closing_endpoints_.empty() ||
                    std::any_of(endpoints_.begin(), endpoints_.end(), [](const auto& e) { return !e->draining.empty(); });
    for (auto it = access_logs_.begin(); !draining && it != access_logs_.end();) {
        bool used = std::any_of(next.handlers.begin(), next.handlers.end(),
                                [&](const auto& h) { return h.access_log == it->first; });
        it = used ? std::next(it) : access_logs_.erase(it);
    }
    config_ = next;
}

// `runtime` stops taking requests; once its handler is drained and its apps
// are stopped it is destroyed.
void Service::retire(Endpoint* endpoint, std::unique_ptr<HandlerRuntime> runtime) {
    HandlerRuntime* rt = runtime.get();
    endpoint->draining.push_back(std::move(runtime));
    std::weak_ptr<const char> alive = alive_;
    rt->handler->shutdown([this, alive, endpoint, rt] {
        // Inside the handler's own callback: finish on the next turn.
        loop_.post([this, alive, endpoint, rt] {
            if (!alive.lock()) return;
            auto& list = endpoint->draining;
            auto it = std::find_if(list.begin(), list.end(), [&](const auto& p) { return p.get() == rt; });
            if (it == list.end()) return;
            // The handler goes now; its gateway and apps one turn later, after
            // the exchanges the handler's end disposes of.
            HandlerRuntime* gone = it->get();
            stopping_.push_back(std::move(*it));
            list.erase(it);
            gone->handler.reset();
            sweep_closing_endpoints();
            loop_.post([this, alive, gone] {
                if (!alive.lock()) return;
                gone->gateway.reset();
                auto forget = [this, gone] {
                    auto& s = stopping_;
                    s.erase(std::remove_if(s.begin(), s.end(), [&](const auto& p) { return p.get() == gone; }), s.end());
                    check_stopped();
                };
                if (gone->spawner)  // not from inside the spawner's own callback: it is destroyed
                    gone->spawner->stop([this, alive, forget] {
                        if (alive.lock()) loop_.post([alive, forget] {
                            if (alive.lock()) forget();
                        });
                    });
                else
                    forget();
            });
        });
    });
}

void Service::retire_endpoint(std::unique_ptr<Endpoint> endpoint) {
    endpoint->sockets->stop_receiving();
    Endpoint* e = endpoint.get();
    closing_endpoints_.push_back(std::move(endpoint));
    if (e->current) retire(e, std::move(e->current));
    sweep_closing_endpoints();
}

// Whether a removed endpoint's replies are all written, or it waited long
// enough; until then it waits, without blocking the loop, for the queue to
// empty (looking again each time it falls) or for kLinger to pass.
bool Service::replies_written(Endpoint& e) {
    if (e.sockets->queued_bytes() == 0 || *e.linger_over) return true;
    std::weak_ptr<const char> alive = alive_;
    auto again = [this, alive] {
        if (!alive.lock()) return;
        sweep_closing_endpoints();
        check_stopped();
    };
    if (!e.lingering) {
        e.lingering = true;
        loop_.after(kLinger, [again, over = e.linger_over] {
            *over = true;
            again();
        });
    }
    if (!*e.queue_watched) {
        *e.queue_watched = true;
        e.sockets->when_queued_below(0, [again, watched = e.queue_watched] {
            *watched = false;
            again();
        });
    }
    return false;
}

void Service::sweep_closing_endpoints() {
    auto& list = closing_endpoints_;
    for (auto it = list.begin(); it != list.end();) {
        if ((*it)->idle() && replies_written(**it)) {
            loop_.dispose_later(std::move(*it));  // its sockets may be mid-callback
            it = list.erase(it);
        } else {
            ++it;
        }
    }
}

void Service::reopen_logs() {
    for (auto& [path, log] : access_logs_) {
        std::string error = log->reopen();
        if (!error.empty()) log::error(error);
    }
}

void Service::stop(std::function<void()> done) {
    on_stopped_ = std::move(done);
    metrics_.reset();
    while (!endpoints_.empty()) {
        auto e = std::move(endpoints_.back());
        endpoints_.pop_back();
        retire_endpoint(std::move(e));
    }
    check_stopped();
}

void Service::check_stopped() {
    if (!on_stopped_ || !endpoints_.empty() || !closing_endpoints_.empty() || !stopping_.empty()) return;
    auto done = std::move(on_stopped_);
    on_stopped_ = nullptr;
    done();
}

size_t Service::in_flight() const {
    size_t n = 0;
    auto count = [&](const auto& list) {
        for (const auto& e : list) {
            if (e->current) n += e->current->handler->in_flight();
            for (const auto& old : e->draining) n += old->handler->in_flight();
        }
    };
    count(endpoints_);
    count(closing_endpoints_);
    return n;
}

std::string Service::metrics_text() const {
    std::vector<std::pair<const HandlerStats*, HandlerGauges>> rows;
    std::map<const HandlerStats*, HandlerGauges> gauges;
    auto add = [&](const HandlerRuntime& rt) {
        HandlerGauges& g = gauges[rt.stats];
        g.in_flight += rt.handler->in_flight();
        g.queued += rt.handler->queued();
        g.backend_connections += rt.handler->in_flight() + rt.gateway->idle_connections();
        if (rt.spawner) g.backend_restarts += rt.spawner->restarts();
    };
    for (const auto* list : {&endpoints_, &closing_endpoints_})
        for (const auto& e : *list) {
            if (e->current) add(*e->current);
            for (const auto& old : e->draining) add(*old);
        }
    for (const auto& [name, stats] : stats_) rows.emplace_back(stats.get(), gauges[stats.get()]);
    return render_prometheus(rows);
}

}  // namespace m2b
