// The options of a handler, once: each is a command-line option ("--max-requests")
// and a key of a [[handler]] table ("max_requests"), with the same bounds.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "bridge/config.h"

namespace m2b {

constexpr unsigned mode_bit(Mode m) { return 1u << static_cast<unsigned>(m); }

struct OptionSpec {
    // The modes an option applies to, as bits of 1 << Mode.
    using Modes = unsigned;
    static constexpr Modes bit(Mode m) { return mode_bit(m); }
    static constexpr Modes kFastCgi = mode_bit(Mode::FastCgi), kCgi = mode_bit(Mode::Cgi);
    static constexpr Modes kSockets = kFastCgi | mode_bit(Mode::Scgi) | mode_bit(Mode::Uwsgi);  // a backend address
    static constexpr Modes kAny = kSockets | kCgi;
    using Field = std::variant<std::string HandlerConfig::*, double HandlerConfig::*, size_t HandlerConfig::*,
                               bool HandlerConfig::*, std::optional<bool> HandlerConfig::*,
                               std::vector<std::string> HandlerConfig::*>;

    const char* key;  // file spelling; the option is "--" + key with '-' for '_'
    const char* help;
    Modes scope;
    Field field;
    double min = 0, max = 0;      // numbers: the accepted range
    bool zero_means_none = false;  // numbers: 0 is also accepted (and means "no limit")

    std::string option() const;  // "--max-requests"
    bool applies_to(Mode mode) const { return (scope & bit(mode)) != 0; }
    // "fastcgi handlers", "fastcgi, scgi and uwsgi handlers"
    std::string applies_to_text() const;
    // "" when `value` is in range, else what is accepted.
    std::string check(double value) const;
};

const std::vector<OptionSpec>& handler_options();

// A file key as the command line spells it: "max_requests" -> "--max-requests".
std::string option_for_key(const char* key);

}  // namespace m2b
