// What an SCGI or uwsgi backend answers: a status line converted to a CGI
// Status header, then the CGI head parser, fed in pieces of any size. Any two
// ways of cutting the input must give the same bytes; a head that parses must
// carry no CR, LF or NUL to the client; a converted status line keeps its code.
// Also the request heads: encoded SCGI and uwsgi vars must decode to what went in.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "adapters/cgi_response.h"
#include "adapters/status_line.h"
#include "adapters/stream/scgi.h"
#include "adapters/stream/uwsgi.h"

using namespace m2b;

namespace {

std::string convert(std::string_view in, size_t step, StatusLineToCgi& c) {
    std::string out;
    for (size_t i = 0; i < in.size(); i += step) out += c.feed(in.substr(i, step));
    return out;
}

// NUL-free pairs from the input: "name=value" lines.
CgiEnv env_from(std::string_view in) {
    CgiEnv env;
    while (!in.empty()) {
        size_t end = in.find('\n');
        std::string_view line = in.substr(0, end);
        size_t eq = line.find('=');
        env.emplace_back(std::string(line.substr(0, eq)), eq == std::string_view::npos ? "" : std::string(line.substr(eq + 1)));
        if (end == std::string_view::npos) break;
        in.remove_prefix(end + 1);
    }
    return env;
}

void check_request_heads(std::string_view in) {
    CgiEnv env = env_from(in);
    std::string error;
    if (auto u = uwsgi::encode_head(env, 0, error)) {
        size_t size = static_cast<unsigned char>((*u)[1]) | static_cast<unsigned char>((*u)[2]) << 8;
        if (size != u->size() - 4) std::abort();
        size_t pos = 4, i = 0;
        while (pos < u->size()) {
            auto take = [&]() {
                size_t n = static_cast<unsigned char>((*u)[pos]) | static_cast<unsigned char>((*u)[pos + 1]) << 8;
                std::string s = u->substr(pos + 2, n);
                pos += 2 + n;
                return s;
            };
            std::string name = take(), value = take();
            if (i >= env.size() || env[i].first != name || env[i].second != value) std::abort();
            ++i;
        }
        if (i != env.size() || pos != u->size()) std::abort();
    }
    if (auto s = scgi::encode_head(env, 0, error)) {
        size_t colon = s->find(':');
        if (colon == std::string::npos || s->back() != ',' || std::stoul(s->substr(0, colon)) != s->size() - colon - 2)
            std::abort();
        if (!s->substr(colon + 1).starts_with(std::string_view("CONTENT_LENGTH\0" "0\0", 17))) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    if (data[0] == 0xFF) {
        check_request_heads(in);
        return 0;
    }
    StatusLineToCgi whole, pieces;
    std::string a = convert(in, in.size() + 1, whole);
    std::string b = convert(in, (data[0] % 16) + 1, pieces);
    if (a != b || whole.state() != pieces.state()) std::abort();
    if (whole.state() == StatusLineToCgi::State::Error && !a.empty()) std::abort();
    if (whole.state() == StatusLineToCgi::State::Passing && in.starts_with("HTTP/") &&
        (!a.starts_with("Status: ") || a.substr(8, 3) != in.substr(9, 3)))
        std::abort();
    CgiHeadParser parser;
    parser.feed(a);
    if (parser.state() == CgiHeadParser::State::Done) {
        const auto& head = parser.head();
        if (head.status < 200 || head.status > 599) std::abort();
        for (const auto& [name, value] : head.headers)
            for (char c : std::string(name) + value)
                if (c == '\r' || c == '\n' || c == '\0') std::abort();
    }
    return 0;
}
