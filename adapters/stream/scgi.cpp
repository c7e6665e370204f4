#include "adapters/stream/scgi.h"

namespace m2b::scgi {

std::optional<std::string> encode_head(const CgiEnv& env, uint64_t body_size, std::string& error) {
    std::string fields;
    auto add = [&](std::string_view name, std::string_view value) {
        fields.append(name);
        fields += '\0';
        fields.append(value);
        fields += '\0';
    };
    // CONTENT_LENGTH must come first and always be there, even "0".
    add("CONTENT_LENGTH", std::to_string(body_size));
    add("SCGI", "1");
    for (const auto& [name, value] : env) {
        if (name == "CONTENT_LENGTH" || name == "SCGI") continue;
        if (name.empty() || name.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
            error = "request variable " + (name.find('\0') == std::string::npos ? name : std::string("?")) +
                    " holds a NUL byte, which SCGI cannot carry";
            return std::nullopt;
        }
        add(name, value);
    }
    return std::to_string(fields.size()) + ":" + fields + ",";
}

}  // namespace m2b::scgi
