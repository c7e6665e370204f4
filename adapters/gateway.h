// The one interface every backend implements: start a CGI-style request,
// stream its output to a sink, cancel it by destroying the handle.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2b {

// CGI/1.1 meta-variables in order (bridge/cgi_env.h builds them from a
// Mongrel2 request): FastCGI PARAMS, a CGI environment, SCGI or uwsgi vars.
using CgiEnv = std::vector<std::pair<std::string, std::string>>;

// The request body: inline bytes, or `length` bytes of an open file (an
// upload Mongrel2 wrote), read in pieces as the backend takes them.
struct BodySource {
    std::string_view bytes;
    int file_fd = -1;
    uint64_t length = 0;  // of the file; inline bodies use bytes.size()
    uint64_t size() const { return file_fd >= 0 ? length : bytes.size(); }
};

enum class BackendFailure {
    Refused,         // the connect failed: nothing reached the backend (another may take it): 502
    ConnectTimeout,  // the connect did not complete within the timeout: the same, but 504
    Unavailable,  // reset or closed before the response: 502
    BadResponse,  // broke the protocol: 502
    Timeout,      // silent longer than the timeout: 504
    Overloaded,   // said it is overloaded, or its backlog is full: 503
};

// What a backend reports. After on_complete or on_failure nothing more arrives.
class ExchangeSink {
public:
    virtual ~ExchangeSink() = default;
    virtual void on_stdout(std::string_view bytes) = 0;
    virtual void on_stderr(std::string_view bytes) = 0;
    virtual void on_complete() = 0;
    virtual void on_failure(BackendFailure failure, std::string_view why) = 0;
};

// One request in progress. Destroying it cancels the request (FastCGI: the
// connection is closed; CGI: the process group is killed). A sink must not
// destroy it from inside one of its callbacks: call cancel() there and hand
// the handle to Loop::post.
class Exchange {
public:
    virtual ~Exchange() = default;
    // Stop/restart reading output: backpressure while the client side drains.
    virtual void set_paused(bool paused) = 0;
    // Stops all I/O and callbacks at once; the destructor still cleans up.
    virtual void cancel() = 0;
};

class Gateway {
public:
    virtual ~Gateway() = default;
    // `env` and `body` must stay valid until the exchange completes or is destroyed.
    virtual std::unique_ptr<Exchange> start(const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                                            ExchangeSink& sink) = 0;
    virtual std::string_view describe() const = 0;
    // Backend connections kept open between requests (metrics).
    virtual size_t idle_connections() const { return 0; }
};

}  // namespace m2b
