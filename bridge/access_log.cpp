#include "bridge/access_log.h"

#include <cerrno>
#include <cstring>

namespace m2b {

AccessLog::AccessLog(std::string path) : path_(std::move(path)) {
    if (path_ == "-") file_ = stderr;
}

AccessLog::~AccessLog() {
    if (file_ && file_ != stderr) fclose(file_);
}

std::string AccessLog::reopen() {
    if (path_ == "-") return "";
    FILE* f = fopen(path_.c_str(), "ae");
    if (!f) return "cannot open access log " + path_ + ": " + strerror(errno);
    if (file_) fclose(file_);
    file_ = f;
    return "";
}

void AccessLog::write(std::string_view line) {
    if (!file_) return;
    fwrite(line.data(), 1, line.size(), file_);
    fflush(file_);
}

}  // namespace m2b
