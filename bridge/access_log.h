// One access-log destination (product.md §6): a file, reopened on SIGHUP so
// logrotate can move it, or stderr. Handlers writing to the same path share one.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace m2b {

class AccessLog {
public:
    explicit AccessLog(std::string path);  // "-": stderr
    ~AccessLog();
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;

    // Empty string, or why the file cannot be opened (the old one stays in use).
    std::string reopen();
    void write(std::string_view line);  // one whole line, newline included
    const std::string& path() const { return path_; }

private:
    std::string path_;
    FILE* file_ = nullptr;
};

}  // namespace m2b
