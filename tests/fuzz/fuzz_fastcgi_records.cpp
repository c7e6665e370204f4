// FastCGI records from a backend, split at arbitrary points, and name-value pairs (decoded,
// then encoded as PARAMS and decoded again).
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
    // Pairs that decode encode back into PARAMS records that decode to the same pairs.
    if (auto pairs = m2b::fcgi::decode_pairs(in)) {
        auto encoded = m2b::fcgi::encode_params(7, *pairs);
        if (!encoded) return 0;  // a pair too large for one record
        m2b::fcgi::RecordReader again;
        again.feed(*encoded);
        m2b::fcgi::Params decoded;
        m2b::fcgi::Record r;
        bool ended = false;
        while (again.next(r) == m2b::fcgi::RecordReader::Result::Record) {
            if (r.type != m2b::fcgi::kParams || r.request_id != 7 || ended) std::abort();
            if (r.content.empty()) {
                ended = true;
                continue;
            }
            auto part = m2b::fcgi::decode_pairs(r.content);  // no pair crosses a record
            if (!part) std::abort();
            decoded.insert(decoded.end(), part->begin(), part->end());
        }
        if (!ended || decoded != *pairs) std::abort();
    }
    return 0;
}
