// FastCGI records from a backend, split at arbitrary points, and name-value pairs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "adapters/fastcgi/record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    size_t step = (data[0] % 64) + 1;
    m2b::fcgi::RecordReader reader;
    for (size_t i = 0; i < in.size(); i += step) {
        reader.feed(in.substr(i, step));
        m2b::fcgi::Record r;
        for (;;) {
            auto result = reader.next(r);
            if (result != m2b::fcgi::RecordReader::Result::Record) break;
            if (r.content.size() > 65535) std::abort();
            m2b::fcgi::decode_pairs(r.content);
            m2b::fcgi::decode_end_request(r.content);
        }
    }
    m2b::fcgi::decode_pairs(in);
    return 0;
}
