#include "base/log.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/stat.h>
#include <sys/time.h>

namespace m2b::log {

namespace {
Level g_level = Level::Info;
// systemd sets JOURNAL_STREAM=DEVICE:INODE of the stream it connected to
// stderr; stderr redirected elsewhere (a file, a pipe) keeps the variable but
// not the inode, and then gets timestamps like any terminal.
bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (!stream) return false;
    unsigned long long device = 0, inode = 0;
    if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
    struct stat st {};
    return fstat(2, &st) == 0 && st.st_dev == device && st.st_ino == inode;
}
const bool g_journal = stderr_is_journal();
}  // namespace

void set_level(Level level) { g_level = level; }
bool enabled(Level level) { return level <= g_level; }

bool parse_level(std::string_view text, Level& out) {
    if (text == "error") out = Level::Error;
    else if (text == "warn") out = Level::Warn;
    else if (text == "info") out = Level::Info;
    else if (text == "debug") out = Level::Debug;
    else return false;
    return true;
}

void write(Level level, std::string_view line) {
    static const char* names[] = {"error", "warn", "info", "debug"};
    static const int priorities[] = {3, 4, 6, 7};
    std::string out;
    if (g_journal) {
        out = "<" + std::to_string(priorities[static_cast<int>(level)]) + ">";
    } else {
        timeval tv;
        gettimeofday(&tv, nullptr);
        std::tm tm{};
        gmtime_r(&tv.tv_sec, &tm);
        char stamp[40];
        snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(tv.tv_usec / 1000));
        out = stamp;
    }
    out += names[static_cast<int>(level)];
    out += ": ";
    out += line;
    out += '\n';
    fwrite(out.data(), 1, out.size(), stderr);
    fflush(stderr);
}

std::string one_line(std::string_view text) {
    std::string out;
    for (char ch : text) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            char hex[5];
            snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else {
            out += ch;
        }
    }
    return out;
}

std::string printable(std::string_view bytes, size_t max) {
    std::string out;
    for (size_t i = 0; i < bytes.size() && i < max; ++i) {
        unsigned char c = static_cast<unsigned char>(bytes[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char hex[5];
            snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    if (bytes.size() > max) out += "...";
    return out;
}

}  // namespace m2b::log
