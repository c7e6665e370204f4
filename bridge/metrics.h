// Prometheus metrics: what each handler counts, and the text exposition
// format (0.0.4) a scrape of /metrics returns. Pure: no sockets, no clock.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2b {

// Upper bounds (seconds) of the request latency histogram's finite buckets;
// one more bucket, +Inf, catches the rest.
inline constexpr std::array<double, 13> kLatencyBucketBounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                             1,     2.5,  5,     10,   30,  60};

// What one handler counts; the Service keeps one per handler name (so reloads keep the
// counts) and the Handler reports each finished request to it.
struct HandlerStats {
    std::string name;     // the handler's name (label handler="...")
    std::string backend;  // "fastcgi", "cgi" or "spawn" (label backend="...")
    std::map<int, uint64_t> requests_by_status;  // every finished request, by HTTP status (0: no reply sent)
    // Per bucket, not cumulative: [i] counts latencies in (bound[i-1], bound[i]],
    // the last one those above 60 s. Cumulative counts are computed when rendering.
    std::array<uint64_t, kLatencyBucketBounds.size() + 1> latency_buckets{};
    double latency_sum = 0;
    uint64_t latency_count = 0;

    // A negative or NaN duration (a clock oddity) counts as 0 s.
    void observe(int status, double seconds);
};

// Gauges are read when the page is rendered.
struct HandlerGauges {
    uint64_t in_flight = 0, queued = 0, backend_connections = 0, backend_restarts = 0;
};

// Prometheus text exposition format 0.0.4 for every handler, in the order
// given, with one # HELP and # TYPE per metric family. Handler names must be
// unique, else the scrape holds duplicate series and Prometheus rejects it.
std::string render_prometheus(const std::vector<std::pair<const HandlerStats*, HandlerGauges>>& handlers);

// A label value escaped for the exposition format: \ " and newline.
std::string escape_label_value(const std::string& value);

// What a scrape asked for, from the first line of its request head
// ("METHOD SP TARGET SP HTTP/1.x"); only /metrics (any query) is served.
enum class ScrapeRequest { Bad, NotFound, WrongMethod, Get, Head };
ScrapeRequest classify_scrape_request(std::string_view head);

}  // namespace m2b
