// Which script a request runs, and what SCRIPT_NAME / PATH_INFO it sees
// (product.md §2, cgi-fastcgi.md §1.5). One resolver serves FastCGI and CGI.
#pragma once

#include <string>
#include <string_view>

namespace m2b {

struct ScriptOptions {
    // Directory mode: the path after the mount point is walked inside this
    // directory (a canonical absolute path, no trailing '/'). Empty: one script.
    std::string directory;
    std::string index;                  // script for paths that end in a directory
    bool require_executable = false;    // CGI: a script must have an x bit (else 403)
};

struct ScriptTarget {
    int status = 0;        // 0: resolved; else 400/403/404 for the client
    std::string error;     // why, for the log
    std::string script_name;
    std::string script_filename;  // directory mode: canonical path of the script
    std::string path_info;        // decoded; empty means unset
};

// The literal prefix of a Mongrel2 route PATTERN, up to the first pattern
// metacharacter and without a trailing '/': "/app/" -> "/app", "/" -> "".
std::string mount_point(std::string_view pattern);

// Percent-decodes one path segment. Fails on a bad escape, an encoded '/',
// NUL or another control byte.
bool decode_segment(std::string_view in, std::string& out);

ScriptTarget resolve_script(const ScriptOptions& options, std::string_view pattern, std::string_view raw_path);

}  // namespace m2b
