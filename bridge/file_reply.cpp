#include "bridge/file_reply.h"

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "bridge/http_reply.h"

namespace m2b {

namespace {

bool inside(const std::string& path, const std::string& root) {
    if (root == "/") return true;
    return path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::optional<uint64_t> number(std::string_view s) {
    uint64_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

std::string_view strong(std::string_view tag) {
    tag = trim(tag);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    return tag;
}

// If-None-Match: "*" or a list of tags, compared weakly (RFC 9110 §13.1.2).
bool none_match_hits(std::string_view header, std::string_view etag) {
    if (trim(header) == "*") return true;
    size_t start = 0;
    while (start <= header.size()) {
        size_t comma = header.find(',', start);
        std::string_view tag = header.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        if (strong(tag) == strong(etag)) return true;
        if (comma == std::string_view::npos) break;
        start = comma + 1;
    }
    return false;
}

// One range of "bytes=..." within `size`: nullopt when the header is not one
// well-formed byte range (it is then ignored: the whole file); {0,0} with
// `unsatisfiable` for a range past the end.
std::optional<std::pair<uint64_t, uint64_t>> one_range(std::string_view header, uint64_t size, bool& unsatisfiable) {
    header = trim(header);
    if (!header.starts_with("bytes=")) return std::nullopt;
    header.remove_prefix(6);
    if (header.find(',') != std::string_view::npos) return std::nullopt;  // several ranges: the whole file (allowed)
    size_t dash = header.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    std::string_view first = trim(header.substr(0, dash)), last = trim(header.substr(dash + 1));
    if (first.empty()) {  // the last N bytes
        auto n = number(last);
        if (!n) return std::nullopt;
        if (*n == 0 || size == 0) {
            unsatisfiable = true;
            return std::pair<uint64_t, uint64_t>{0, 0};
        }
        uint64_t take = std::min(*n, size);
        return std::pair<uint64_t, uint64_t>{size - take, take};
    }
    auto from = number(first);
    if (!from) return std::nullopt;
    std::optional<uint64_t> to;
    if (!last.empty()) {
        to = number(last);
        if (!to || *to < *from) return std::nullopt;
    }
    if (*from >= size) {
        unsatisfiable = true;
        return std::pair<uint64_t, uint64_t>{0, 0};
    }
    uint64_t end = to ? std::min(*to, size - 1) : size - 1;
    return std::pair<uint64_t, uint64_t>{*from, end - *from + 1};
}

}  // namespace

UniqueFd open_in_roots(const std::string& path, const std::vector<std::string>& roots, struct stat& st,
                       std::string& why) {
    if (roots.empty()) {
        why = "no --sendfile-root is configured";
        return {};
    }
    if (path.empty() || path[0] != '/') {
        why = "not an absolute path";
        return {};
    }
    // O_PATH names the file without opening it for I/O: no effect on a device or FIFO,
    // and what it names cannot change under us (a symlink swapped in later is not followed).
    UniqueFd named(open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!named) {
        why = strerror(errno);
        return {};
    }
    std::string self = "/proc/self/fd/" + std::to_string(named.get());
    char real[PATH_MAX];
    ssize_t n = readlink(self.c_str(), real, sizeof real - 1);
    if (n <= 0) {
        why = std::string("cannot tell where it is: ") + strerror(errno);
        return {};
    }
    std::string where(real, static_cast<size_t>(n));
    bool allowed = false;
    for (const auto& root : roots) allowed = allowed || inside(where, root);
    if (!allowed) {
        why = "outside every --sendfile-root (it is " + where + ")";
        return {};
    }
    if (fstat(named.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        why = "not a regular file";
        return {};
    }
    // The same inode, now for reading.
    UniqueFd fd(open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) why = strerror(errno);
    return fd;
}

FilePlan plan_file_reply(uint64_t size, std::time_t mtime, long mtime_nsec, int app_status, const FileConditions& request) {
    FilePlan plan;
    plan.status = app_status == 206 ? 200 : app_status;
    plan.length = status_has_no_body(plan.status) ? 0 : size;
    char etag[64];
    std::snprintf(etag, sizeof etag, "\"%llx-%llx\"", static_cast<unsigned long long>(size),
                  static_cast<unsigned long long>(mtime) * 1000000000ull + static_cast<unsigned long long>(mtime_nsec));
    if (plan.status != 200) return plan;
    plan.headers = {{"ETag", etag}, {"Last-Modified", http_date(mtime)}, {"Accept-Ranges", "bytes"}};
    if (!request.get_or_head) return plan;  // a POST gets the file, never a 304 or a range
    // RFC 9110 §13.2.2: If-None-Match first; If-Modified-Since only without it.
    bool fresh = false;
    if (request.if_none_match) {
        fresh = none_match_hits(*request.if_none_match, etag);
    } else if (request.if_modified_since) {
        auto since = parse_http_date(*request.if_modified_since);
        fresh = since && mtime <= *since;
    }
    if (fresh) {
        plan.status = 304;
        plan.length = 0;
        return plan;
    }
    if (!request.range) return plan;
    // If-Range: the range only while the client's copy is current (a strong tag or the date).
    if (request.if_range) {
        std::string_view tag = trim(*request.if_range);
        bool current = tag.starts_with("\"") ? tag == etag : parse_http_date(tag) == std::optional<std::time_t>(mtime);
        if (!current) return plan;
    }
    bool unsatisfiable = false;
    auto range = one_range(*request.range, size, unsatisfiable);
    if (unsatisfiable) {
        plan.status = 416;
        plan.length = 0;
        plan.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
        return plan;
    }
    if (!range) return plan;
    plan.status = 206;
    plan.offset = range->first;
    plan.length = range->second;
    plan.headers.emplace_back("Content-Range", "bytes " + std::to_string(range->first) + "-" +
                                                   std::to_string(range->first + range->second - 1) + "/" +
                                                   std::to_string(size));
    return plan;
}

std::optional<std::time_t> parse_http_date(std::string_view text) {
    text = trim(text);
    if (text.size() != 29 || text.substr(25) != " GMT") return std::nullopt;
    std::string copy(text);
    struct tm tm {};
    const char* end = strptime(copy.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end) return std::nullopt;
    return timegm(&tm);
}

}  // namespace m2b
