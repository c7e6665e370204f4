// The request headers as Mongrel2 sends them: lower-case client names and
// upper-case names Mongrel2 writes itself; a repeated client header keeps
// each value in arrival order.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace m2b {

struct Header {
    std::string name;
    std::vector<std::string> values;
};

using HeaderList = std::vector<Header>;

// The first value of `name` (exact, case-sensitive match), or nullptr.
const std::string* find_header(const HeaderList& headers, std::string_view name);

}  // namespace m2b
