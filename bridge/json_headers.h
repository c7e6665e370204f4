// Mongrel2's JSON header object: {"NAME":"value", "name":["v1","v2"], ...}.
//
// Valid JSON goes through simdjson. Mongrel2 escapes only '"' and '\' in
// values, so a header holding a raw TAB or a byte that is not UTF-8 makes the
// object invalid JSON; those objects are read by a lenient parser that keeps
// the bytes exactly as they came (mongrel2-protocol.md §2.5).
#pragma once

#include <optional>
#include <string_view>

#include "bridge/headers.h"

namespace m2b {

std::optional<HeaderList> parse_json_headers(std::string_view json);

// The lenient parser alone (exposed for tests and the fuzzer).
std::optional<HeaderList> parse_json_headers_lenient(std::string_view json);

}  // namespace m2b
