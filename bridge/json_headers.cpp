#include "bridge/json_headers.h"

#include <simdjson.h>

namespace m2b {

const std::string* find_header(const HeaderList& headers, std::string_view name) {
    for (const auto& h : headers)
        if (h.name == name && !h.values.empty()) return &h.values.front();
    return nullptr;
}

namespace {

std::optional<HeaderList> parse_with_simdjson(std::string_view json) {
    // One parser per thread: it keeps its buffers between calls.
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object object;
    if (parser.parse(simdjson::padded_string(json)).get_object().get(object)) return std::nullopt;
    HeaderList out;
    for (auto field : object) {
        Header h;
        h.name = std::string(field.key);
        std::string_view text;
        simdjson::dom::array array;
        if (!field.value.get_string().get(text)) {
            h.values.emplace_back(text);
        } else if (!field.value.get_array().get(array)) {
            for (auto item : array) {
                if (item.get_string().get(text)) return std::nullopt;
                h.values.emplace_back(text);
            }
        } else {
            return std::nullopt;
        }
        out.push_back(std::move(h));
    }
    return out;
}

// A hand-written reader for the only shape Mongrel2 produces: an object of
// strings or arrays of strings. Raw control bytes and non-UTF-8 bytes inside
// strings are kept as they are.
class LenientReader {
public:
    explicit LenientReader(std::string_view in) : in_(in) {}

    std::optional<HeaderList> object() {
        HeaderList out;
        skip_space();
        if (!eat('{')) return std::nullopt;
        skip_space();
        if (eat('}')) return finish(std::move(out));
        for (;;) {
            Header h;
            skip_space();
            if (!string(h.name)) return std::nullopt;
            skip_space();
            if (!eat(':')) return std::nullopt;
            skip_space();
            if (peek() == '[') {
                ++pos_;
                skip_space();
                if (!eat(']')) {
                    for (;;) {
                        skip_space();
                        std::string v;
                        if (!string(v)) return std::nullopt;
                        h.values.push_back(std::move(v));
                        skip_space();
                        if (eat(']')) break;
                        if (!eat(',')) return std::nullopt;
                    }
                }
            } else {
                std::string v;
                if (!string(v)) return std::nullopt;
                h.values.push_back(std::move(v));
            }
            out.push_back(std::move(h));
            skip_space();
            if (eat('}')) return finish(std::move(out));
            if (!eat(',')) return std::nullopt;
        }
    }

private:
    std::optional<HeaderList> finish(HeaderList out) {
        skip_space();
        if (pos_ != in_.size()) return std::nullopt;
        return out;
    }
    int peek() const { return pos_ < in_.size() ? static_cast<unsigned char>(in_[pos_]) : -1; }
    bool eat(char c) {
        if (peek() != static_cast<unsigned char>(c)) return false;
        ++pos_;
        return true;
    }
    void skip_space() {
        while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\n' || in_[pos_] == '\r' || in_[pos_] == '\t'))
            ++pos_;
    }
    static int hex(int c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    bool hex4(unsigned& out) {
        if (in_.size() - pos_ < 4) return false;
        out = 0;
        for (int i = 0; i < 4; ++i) {
            int d = hex(static_cast<unsigned char>(in_[pos_++]));
            if (d < 0) return false;
            out = out * 16 + static_cast<unsigned>(d);
        }
        return true;
    }
    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    bool string(std::string& out) {
        if (!eat('"')) return false;
        while (pos_ < in_.size()) {
            char c = in_[pos_++];
            if (c == '"') return true;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= in_.size()) return false;
            char e = in_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xD800 && cp < 0xDC00 && in_.substr(pos_, 2) == "\\u") {
                        size_t save = pos_;
                        pos_ += 2;
                        unsigned low;
                        if (hex4(low) && low >= 0xDC00 && low < 0xE000) {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        } else {
                            pos_ = save;
                        }
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: return false;
            }
        }
        return false;
    }

    std::string_view in_;
    size_t pos_ = 0;
};

}  // namespace

std::optional<HeaderList> parse_json_headers_lenient(std::string_view json) {
    return LenientReader(json).object();
}

std::optional<HeaderList> parse_json_headers(std::string_view json) {
    if (auto strict = parse_with_simdjson(json)) return strict;
    return parse_json_headers_lenient(json);
}

}  // namespace m2b
