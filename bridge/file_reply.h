// X-Sendfile / X-Accel-Redirect (product.md §1): the app names a file and
// m2bridge sends it instead of the app's body. Here the two decisions that
// need no I/O beyond opening the file: may this path be sent (only from the
// --sendfile-root directories, never through a symlink out of them), and what
// the reply is (200, 206 for one range, 304 for a fresh cache, 416).
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <utility>
#include <vector>

#include "base/unique_fd.h"

namespace m2b {

// Opens `path` for reading when its real location (symlinks resolved, from
// the opened descriptor itself) lies inside one of `roots` (canonical
// directories) and it is a regular file. Else an empty fd and `why` set.
// Nothing outside the roots is ever opened for reading: opening a device or
// a FIFO can have effects of its own.
UniqueFd open_in_roots(const std::string& path, const std::vector<std::string>& roots, struct stat& st,
                       std::string& why);

// The request's fields that decide the reply.
struct FileConditions {
    bool get_or_head = true;                       // ranges and 304 are for GET and HEAD only
    std::optional<std::string> range;              // Range
    std::optional<std::string> if_range;           // If-Range
    std::optional<std::string> if_none_match;      // If-None-Match
    std::optional<std::string> if_modified_since;  // If-Modified-Since
};

struct FilePlan {
    int status = 200;
    uint64_t offset = 0;
    uint64_t length = 0;  // body bytes from offset (0 for 304 and 416)
    std::vector<std::pair<std::string, std::string>> headers;  // ETag, Last-Modified, Accept-Ranges, Content-Range
};

// `app_status` is the status the app gave with the header: ranges and
// conditions apply only to a 200 (a 206 from the app counts as 200: the range
// is m2bridge's to cut); any other status sends the whole file with it, or
// nothing for a status that has no body (204, 304).
FilePlan plan_file_reply(uint64_t size, std::time_t mtime, long mtime_nsec, int app_status, const FileConditions& request);

// "Sun, 06 Nov 1994 08:49:37 GMT" -> seconds; nullopt if it is not an IMF-fixdate.
std::optional<std::time_t> parse_http_date(std::string_view text);

}  // namespace m2b
