// The uwsgi protocol (uwsgi-docs.readthedocs.io/en/latest/Protocol.html):
// a 4-byte header (modifier1 0 for a WSGI/CGI request, the size of the vars
// as 16-bit little-endian, modifier2 0), the vars as 16-bit little-endian
// length-prefixed names and values, then CONTENT_LENGTH bytes of body. The
// answer is raw HTTP with a status line (see status_line.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "adapters/gateway.h"

namespace m2b::uwsgi {

inline constexpr size_t kMaxVars = 0xFFFF;  // the 16-bit size of the header

// The packet header and vars; nullopt with `error` set when the vars do not
// fit the 16-bit sizes. The body's size goes in CONTENT_LENGTH.
std::optional<std::string> encode_head(const CgiEnv& env, uint64_t body_size, std::string& error);

}  // namespace m2b::uwsgi
