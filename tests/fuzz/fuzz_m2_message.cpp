// Mongrel2 request messages: line, JSON or tnetstring headers, body netstring.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bridge/m2_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    m2b::parse_m2_message(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
