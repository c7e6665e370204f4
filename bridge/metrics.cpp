#include "bridge/metrics.h"

#include <charconv>
#include <cmath>
#include <string_view>

namespace m2b {

namespace {

// Shortest text that reads back as the same double; the format's spellings for
// the non-finite values.
std::string format_double(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    char text[64];
    auto result = std::to_chars(text, text + sizeof text, value);
    return std::string(text, result.ptr);
}

void family_header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// name{handler="..."<extra>} value
void sample(std::string& out, std::string_view name, const HandlerStats& stats, std::string_view extra_labels,
            std::string_view value) {
    out.append(name).append("{handler=\"").append(escape_label_value(stats.name)).append("\"");
    out.append(extra_labels).append("} ").append(value).append("\n");
}

}  // namespace

void HandlerStats::observe(int status, double seconds) {
    ++requests_by_status[status];
    if (!(seconds > 0)) seconds = 0;  // also catches NaN
    size_t bucket = 0;
    while (bucket < kLatencyBucketBounds.size() && seconds > kLatencyBucketBounds[bucket]) ++bucket;
    ++latency_buckets[bucket];
    latency_sum += seconds;
    ++latency_count;
}

std::string escape_label_value(const std::string& value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
    return out;
}

std::string render_prometheus(const std::vector<std::pair<const HandlerStats*, HandlerGauges>>& handlers) {
    std::string out;

    family_header(out, "m2bridge_requests_total", "counter",
                  "Requests finished, by HTTP status sent (0: none was sent).");
    for (const auto& [stats, gauges] : handlers) {
        std::string backend = ",backend=\"" + escape_label_value(stats->backend) + "\"";
        for (const auto& [status, count] : stats->requests_by_status)
            sample(out, "m2bridge_requests_total", *stats, backend + ",status=\"" + std::to_string(status) + "\"",
                   std::to_string(count));
    }

    // The gauges: one family each, one sample per handler.
    struct Gauge {
        std::string_view name, type, help;
        uint64_t HandlerGauges::*field;
    };
    static constexpr Gauge gauge_families[] = {
        {"m2bridge_requests_in_flight", "gauge", "Requests being answered by the backend now.",
         &HandlerGauges::in_flight},
        {"m2bridge_requests_queued", "gauge", "Requests waiting for a free backend slot.", &HandlerGauges::queued},
        {"m2bridge_backend_connections", "gauge", "Open connections to the backend (FastCGI) or running CGI programs.",
         &HandlerGauges::backend_connections},
        {"m2bridge_backend_restarts_total", "counter", "Spawned backend processes restarted after they exited.",
         &HandlerGauges::backend_restarts},
    };
    for (const Gauge& gauge : gauge_families) {
        family_header(out, gauge.name, gauge.type, gauge.help);
        for (const auto& [stats, gauges] : handlers)
            sample(out, gauge.name, *stats, "", std::to_string(gauges.*gauge.field));
    }

    family_header(out, "m2bridge_request_duration_seconds", "histogram",
                  "Time from a request's arrival to the end of its reply.");
    for (const auto& [stats, gauges] : handlers) {
        uint64_t cumulative = 0;
        for (size_t i = 0; i < stats->latency_buckets.size(); ++i) {
            cumulative += stats->latency_buckets[i];
            std::string le = i < kLatencyBucketBounds.size() ? format_double(kLatencyBucketBounds[i]) : "+Inf";
            sample(out, "m2bridge_request_duration_seconds_bucket", *stats, ",le=\"" + le + "\"",
                   std::to_string(cumulative));
        }
        sample(out, "m2bridge_request_duration_seconds_sum", *stats, "", format_double(stats->latency_sum));
        sample(out, "m2bridge_request_duration_seconds_count", *stats, "", std::to_string(stats->latency_count));
    }
    return out;
}

ScrapeRequest classify_scrape_request(std::string_view head) {
    std::string_view line = head.substr(0, head.find('\n'));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first_space = line.find(' ');
    size_t second_space = first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
    if (second_space == std::string_view::npos || line.find(' ', second_space + 1) != std::string_view::npos)
        return ScrapeRequest::Bad;
    std::string_view method = line.substr(0, first_space);
    std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
    std::string_view version = line.substr(second_space + 1);
    if (method.empty() || target.empty() || version.size() != 8 || version.substr(0, 7) != "HTTP/1." ||
        version[7] < '0' || version[7] > '9')
        return ScrapeRequest::Bad;
    if (target.substr(0, target.find('?')) != "/metrics") return ScrapeRequest::NotFound;
    if (method == "GET") return ScrapeRequest::Get;
    if (method == "HEAD") return ScrapeRequest::Head;
    return ScrapeRequest::WrongMethod;
}

}  // namespace m2b
