// The FastCGI client: one responder request per backend connection (php-fpm
// and libfcgi neither multiplex nor pipeline), kept for reuse with
// FCGI_KEEP_CONN (see pool.h) unless keep_conn is off.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "adapters/backend_address.h"
#include "adapters/fastcgi/pool.h"
#include "adapters/gateway.h"
#include "base/loop.h"

namespace m2b {

struct FastcgiOptions {
    std::string address;  // "unix:/path.sock" or "HOST:PORT"
    std::chrono::milliseconds timeout{60000};
    bool keep_conn = false;
    size_t max_connections = 64;  // kept connections at most (--max-requests)
};

class FastcgiGateway : public Gateway {
public:
    FastcgiGateway(Loop& loop, FastcgiOptions options);
    ~FastcgiGateway() override;

    std::unique_ptr<Exchange> start(const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                                    ExchangeSink& sink) override;
    std::string_view describe() const override { return options_.address; }
    size_t idle_connections() const override { return kept_ ? kept_->idle() : 0; }

    // Used by exchanges.
    int connect_new(int& error) { return address_.connect(error); }  // see BackendAddress::connect
    KeptConnections* kept() { return kept_.get(); }  // null without keep_conn
    Loop& loop() { return loop_; }
    const FastcgiOptions& options() const { return options_; }

private:
    Loop& loop_;
    FastcgiOptions options_;
    BackendAddress address_;
    std::unique_ptr<KeptConnections> kept_;
};

}  // namespace m2b
