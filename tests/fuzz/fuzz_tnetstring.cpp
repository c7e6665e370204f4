// Netstrings and tnetstring header dicts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bridge/netstring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    m2b::parse_netstring(in);
    m2b::parse_tnetstring_dict_payload(in);
    return 0;
}
