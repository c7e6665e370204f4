#include "adapters/status_line.h"

#include <algorithm>

namespace m2b {

namespace {

constexpr std::string_view kPrefix = "HTTP/";

bool digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string_view StatusLineToCgi::feed(std::string_view bytes) {
    if (state_ == State::Passing) return bytes;
    if (state_ == State::Error) return {};
    if (state_ == State::Deciding) {
        size_t take = std::min(bytes.size(), kPrefix.size() - held_.size());
        held_.append(bytes.substr(0, take));
        bytes.remove_prefix(take);
        if (kPrefix.substr(0, held_.size()) != held_) {
            state_ = State::Passing;  // a CGI response: hand on what was held, then the rest
            out_ = std::move(held_);
            out_.append(bytes);
            held_.clear();
            return out_;
        }
        if (held_.size() < kPrefix.size()) return {};
        state_ = State::InLine;
    }
    size_t newline = bytes.find('\n');
    size_t line_part = newline == std::string_view::npos ? bytes.size() : newline + 1;
    if (held_.size() + line_part > kMaxLine) {
        state_ = State::Error;
        error_ = "status line longer than " + std::to_string(kMaxLine) + " bytes";
        return {};
    }
    held_.append(bytes.substr(0, line_part));
    if (newline == std::string_view::npos) return {};
    return convert_line(bytes.substr(line_part));
}

// held_ is "HTTP/x.y NNN reason\r\n"; becomes "Status: NNN reason\r\n" + rest.
std::string_view StatusLineToCgi::convert_line(std::string_view rest) {
    std::string_view line(held_);
    line.remove_suffix(1);  // '\n'
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // "HTTP/" DIGIT "." DIGIT SP 3DIGIT [SP reason]
    bool ok = line.size() >= 12 && digit(line[5]) && line[6] == '.' && digit(line[7]) && line[8] == ' ' &&
              digit(line[9]) && digit(line[10]) && digit(line[11]) && (line.size() == 12 || line[12] == ' ');
    std::string_view reason = line.size() > 13 ? line.substr(13) : std::string_view();
    for (char c : reason)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) ok = false;
    if (!ok) {
        state_ = State::Error;
        std::string shown(line.substr(0, 80));
        for (char& c : shown)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
        error_ = "malformed status line: " + shown;
        return {};
    }
    state_ = State::Passing;
    out_ = "Status: ";
    out_.append(line.substr(9, 3));
    if (!reason.empty()) {
        out_ += ' ';
        out_.append(reason);
    }
    out_ += "\r\n";
    out_.append(rest);
    held_.clear();
    held_.shrink_to_fit();
    return out_;
}

}  // namespace m2b
