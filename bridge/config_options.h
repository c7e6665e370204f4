// The options of a handler, once: each is a command-line option ("--max-requests")
// and a key of a [[handler]] table ("max_requests"), with the same bounds.
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "bridge/config.h"

namespace m2b {

struct OptionSpec {
    enum class Scope { Any, FastCgi, Cgi };
    using Field = std::variant<std::string HandlerConfig::*, double HandlerConfig::*, size_t HandlerConfig::*,
                               bool HandlerConfig::*, std::optional<bool> HandlerConfig::*,
                               std::vector<std::string> HandlerConfig::*>;

    const char* key;  // file spelling; the option is "--" + key with '-' for '_'
    const char* help;
    Scope scope;
    Field field;
    double min = 0, max = 0;      // numbers: the accepted range
    bool zero_means_none = false;  // numbers: 0 is also accepted (and means "no limit")

    std::string option() const;  // "--max-requests"
    bool applies_to(Mode mode) const {
        return scope == Scope::Any || (scope == Scope::Cgi) == (mode == Mode::Cgi);
    }
    // "" when `value` is in range, else what is accepted.
    std::string check(double value) const;
};

const std::vector<OptionSpec>& handler_options();

// A file key as the command line spells it: "max_requests" -> "--max-requests".
std::string option_for_key(const char* key);

}  // namespace m2b
