// Error log: one line per event on stderr, with the connection id where there
// is one. Under systemd (JOURNAL_STREAM set) the journal adds timestamps and
// levels itself, so lines carry a <N> priority prefix instead of a time.
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

namespace m2b::log {

enum class Level { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_level(Level level);
bool enabled(Level level);
bool parse_level(std::string_view text, Level& out);
void write(Level level, std::string_view line);

template <typename... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}

template <typename... Parts>
void error(const Parts&... parts) {
    if (enabled(Level::Error)) write(Level::Error, cat(parts...));
}
template <typename... Parts>
void warn(const Parts&... parts) {
    if (enabled(Level::Warn)) write(Level::Warn, cat(parts...));
}
template <typename... Parts>
void info(const Parts&... parts) {
    if (enabled(Level::Info)) write(Level::Info, cat(parts...));
}
template <typename... Parts>
void debug(const Parts&... parts) {
    if (enabled(Level::Debug)) write(Level::Debug, cat(parts...));
}

// Log text from outside (backend stderr, request bytes) made printable.
// `text` with control bytes as \xNN and nothing else changed: one line, still readable.
std::string one_line(std::string_view text);
std::string printable(std::string_view bytes, size_t max = 200);

}  // namespace m2b::log
