// SCGI (python.ca/scgi/protocol.txt): the request is a netstring of
// NUL-terminated names and values, CONTENT_LENGTH first and SCGI=1, then the
// body. The answer is a CGI response (or an HTTP one: see status_line.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "adapters/gateway.h"

namespace m2b::scgi {

// The netstring before the body; nullopt with `error` set when a name or
// value holds a NUL byte (it would end the name or value early).
std::optional<std::string> encode_head(const CgiEnv& env, uint64_t body_size, std::string& error);

}  // namespace m2b::scgi
