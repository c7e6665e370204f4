// Netstrings and tnetstring header dicts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bridge/netstring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    m2b::parse_netstring(in);
    if (auto entries = m2b::parse_tnetstring_dict_payload(in))
        for (const auto& e : *entries)
            m2b::for_each_value(e, [&](std::string_view v) {
                // Every value lies inside the input.
                if (v.data() < in.data() || v.data() + v.size() > in.data() + in.size()) __builtin_trap();
            });
    return 0;
}
