// The backends m2bridge speaks, each named once: its subcommand and config
// key, what its operand is, and how its gateway is built. Adding a protocol
// is a row here and, for options of its own, a mode bit in config_options.cpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapters/gateway.h"
#include "base/loop.h"
#include "bridge/config.h"

namespace m2b {

struct ModeInfo {
    Mode mode;
    const char* name;         // "fastcgi": the subcommand, the config key, logs and metrics
    const char* description;  // the subcommand's help
    bool address;             // the operand is a socket address (else a program or directory)
    // The gateway to one backend of a handler (an address, or the CGI path).
    // Throws std::invalid_argument for a bad address.
    std::unique_ptr<Gateway> (*make_gateway)(Loop& loop, const HandlerConfig& config, const std::string& backend);
};

// The handler's gateway: its one backend, or all of them balanced
// (adapters/balancer.h). The backend is resolved by now (a spawned FastCGI
// server's socket filled in). Throws std::invalid_argument.
std::unique_ptr<Gateway> make_gateway(Loop& loop, const HandlerConfig& config);

const std::vector<ModeInfo>& modes();
const ModeInfo& mode_info(Mode mode);
// "fastcgi, cgi, scgi or uwsgi" (for messages).
std::string mode_names(const char* last_separator = " or ");

}  // namespace m2b
