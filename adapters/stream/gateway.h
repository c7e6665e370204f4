// The stream protocols (SCGI, uwsgi) on the byte pump (byte_pump.h): one
// connection per request; the protocol's head, then the body (inline, or the
// upload file a chunk at a time as the backend takes it), while the response
// is read until the backend closes. A protocol is only its head encoder: the
// response is a CGI response or an HTTP one (status_line.h), the same for both.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "adapters/backend_address.h"
#include "adapters/gateway.h"
#include "base/loop.h"

namespace m2b {

struct StreamProtocol {
    const char* name;  // "scgi", "uwsgi": logs and metrics
    // The bytes sent before the body; nullopt with `error` set when the
    // request cannot be put in this protocol (the answer is 502).
    std::optional<std::string> (*encode_head)(const CgiEnv& env, uint64_t body_size, std::string& error);
};

extern const StreamProtocol kScgi;
extern const StreamProtocol kUwsgi;

struct StreamOptions {
    std::string address;  // "unix:/path.sock" or "HOST:PORT"
    std::chrono::milliseconds timeout{60000};
    const StreamProtocol* protocol = &kScgi;
};

class StreamGateway : public Gateway {
public:
    StreamGateway(Loop& loop, StreamOptions options);  // throws std::invalid_argument for a bad address

    std::unique_ptr<Exchange> start(const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                                    ExchangeSink& sink) override;
    std::string_view describe() const override { return address_.text(); }

    // Used by exchanges.
    Loop& loop() { return loop_; }
    const StreamOptions& options() const { return options_; }
    const BackendAddress& address() const { return address_; }

private:
    Loop& loop_;
    StreamOptions options_;
    BackendAddress address_;
};

}  // namespace m2b
