// Everything one m2bridge process runs: a Handler per [[handler]] with its
// Mongrel2 sockets, backend gateway and spawned apps, the shared access logs
// and the metrics. Reload applies a new config without dropping a request in
// flight: unchanged handlers keep running, changed ones are replaced while the
// old one finishes what it has, removed ones drain and go.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bridge/config.h"
#include "base/loop.h"
#include "bridge/metrics.h"

namespace m2b {

class AccessLog;
class MetricsServer;
struct Endpoint;
struct HandlerRuntime;

class Service {
public:
    // How long a removed endpoint (or every endpoint, at exit) waits for its
    // last replies to be written to Mongrel2, as libzmq's linger did.
    static constexpr std::chrono::milliseconds kLinger{2000};

    explicit Service(Loop& loop);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    // Starts every handler. Throws (ConfigError or std::runtime_error) naming
    // what failed; nothing is left running then.
    void start(const ServiceConfig& config);
    // Applies a new config. Throws, and changes nothing, if a new piece cannot start.
    void reload(const ServiceConfig& config);
    void reopen_logs();
    // Stops reading requests, lets those in flight finish, stops spawned apps;
    // `done` runs once all that is over.
    void stop(std::function<void()> done);

    size_t in_flight() const;
    std::string metrics_text() const;
    const ServiceConfig& config() const { return config_; }

private:
    std::unique_ptr<HandlerRuntime> make_runtime(const HandlerConfig& h);
    AccessLog* access_log_for(const std::string& path);
    void retire(Endpoint* endpoint, std::unique_ptr<HandlerRuntime> runtime);
    void retire_endpoint(std::unique_ptr<Endpoint> endpoint);
    void sweep_closing_endpoints();
    bool replies_written(Endpoint& e);
    void check_stopped();

    Loop& loop_;
    ServiceConfig config_;
    std::vector<std::unique_ptr<Endpoint>> endpoints_;
    std::vector<std::unique_ptr<Endpoint>> closing_endpoints_;  // removed: draining, then gone
    std::vector<std::unique_ptr<HandlerRuntime>> stopping_;      // drained; their apps are stopping
    std::unique_ptr<MetricsServer> metrics_;
    std::map<std::string, std::unique_ptr<AccessLog>> access_logs_;
    std::map<std::string, std::unique_ptr<HandlerStats>> stats_;  // by handler name; survive reloads
    std::function<void()> on_stopped_;
    std::shared_ptr<const char> alive_ = std::make_shared<const char>(0);
};

}  // namespace m2b
