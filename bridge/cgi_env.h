// A Mongrel2 request as CGI/1.1 meta-variables (RFC 3875 §4.1, product.md §2).
// The same list becomes FastCGI PARAMS or a CGI program's environment.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/gateway.h"
#include "adapters/script_path.h"
#include "bridge/m2_request.h"

namespace m2b {

struct EnvOptions {
    std::string document_root;    // DOCUMENT_ROOT and PATH_TRANSLATED; may be empty
    std::string script_filename;  // fixed SCRIPT_FILENAME (front controller); may be empty
};

// `content_length`: the body the backend will get, or nullopt when there is none.
CgiEnv build_cgi_env(const Request& request, const ScriptTarget& target, const EnvOptions& options,
                     std::optional<uint64_t> content_length);

// "HTTP_" + the header name upper-cased with '-' as '_', or "" when the
// header must not be passed (invalid name, httpoxy, framing, Mongrel2's own).
std::string http_variable_name(std::string_view header_name);

// SERVER_NAME and SERVER_PORT from a Host value ("h", "h:8080", "[::1]:80").
std::pair<std::string, std::string> split_host(std::string_view host, bool https);

}  // namespace m2b
