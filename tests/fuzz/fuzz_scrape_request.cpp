// The metrics server's request line, as anyone who reaches its port sends it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "bridge/metrics.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view head(reinterpret_cast<const char*>(data), size);
    m2b::ScrapeRequest r = m2b::classify_scrape_request(head);
    // Only GET/HEAD of /metrics is ever answered with the page.
    if ((r == m2b::ScrapeRequest::Get && !head.starts_with("GET /metrics")) ||
        (r == m2b::ScrapeRequest::Head && !head.starts_with("HEAD /metrics")))
        std::abort();
    return 0;
}
