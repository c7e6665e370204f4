// Mongrel2's JSON header objects; the strict and the lenient reader must
// agree whenever simdjson accepts the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "bridge/json_headers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    auto any = m2b::parse_json_headers(in);
    auto lenient = m2b::parse_json_headers_lenient(in);
    if (lenient && !any) std::abort();  // the combined reader falls back to the lenient one
    if (any && lenient) {
        if (any->size() != lenient->size()) std::abort();
        for (size_t i = 0; i < any->size(); ++i)
            if ((*any)[i].name != (*lenient)[i].name || (*any)[i].values != (*lenient)[i].values) std::abort();
    }
    return 0;
}
