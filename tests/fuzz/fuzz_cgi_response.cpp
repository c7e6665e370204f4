// CGI response heads, fed in pieces; a parsed head must never carry CR, LF or
// NUL into a header the client would see.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "adapters/cgi_response.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    size_t step = (data[0] % 32) + 1;
    m2b::CgiHeadParser parser;
    for (size_t i = 0; i < in.size(); i += step)
        if (parser.feed(in.substr(i, step)) != m2b::CgiHeadParser::State::NeedMore) break;
    if (parser.state() == m2b::CgiHeadParser::State::Done) {
        const auto& head = parser.head();
        if (head.status < 200 || head.status > 599) std::abort();
        for (const auto& [name, value] : head.headers)
            for (char c : std::string(name) + value)
                if (c == '\r' || c == '\n' || c == '\0') std::abort();
        for (char c : head.reason)
            if (c == '\r' || c == '\n' || c == '\0') std::abort();
    }
    return 0;
}
