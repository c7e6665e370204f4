#include "bridge/upload.h"

namespace m2b {

namespace {

bool declares_body(const Request& r) {
    if (const std::string* te = r.header("transfer-encoding"); te && te->find("chunked") != std::string::npos) return true;
    const std::string* cl = r.header("content-length");
    if (!cl || cl->empty()) return false;
    for (char c : *cl)
        if (c < '0' || c > '9') return false;
    return cl->find_first_not_of('0') != std::string::npos;
}

bool is_mkstemp_suffix(const std::string& s) {
    if (s.size() != 6) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
    return true;
}

}  // namespace

std::string upload_path_in_store(const std::string& reported, const std::string& store_template) {
    size_t tslash = store_template.rfind('/');
    if (tslash == std::string::npos || store_template.size() < 6) return "";
    std::string store_dir = store_template.substr(0, tslash);
    std::string prefix = store_template.substr(tslash + 1, store_template.size() - tslash - 1 - 6);

    size_t rslash = reported.rfind('/');
    std::string name = rslash == std::string::npos ? reported : reported.substr(rslash + 1);
    std::string dir = rslash == std::string::npos ? "" : reported.substr(0, rslash);
    if (name.size() != prefix.size() + 6 || name.compare(0, prefix.size(), prefix) != 0) return "";
    if (!is_mkstemp_suffix(name.substr(prefix.size()))) return "";
    if (dir.find("..") != std::string::npos || dir.find("//") != std::string::npos) return "";
    if (!dir.empty() && dir[0] == '/') {
        // Absolute: Mongrel2 runs without chroot and sees the same tree, or the
        // path is inside its chroot; either way the store must end with it.
        if (!(store_dir == dir || (store_dir.size() > dir.size() &&
                                   store_dir.compare(store_dir.size() - dir.size(), dir.size(), dir) == 0)))
            return "";
    } else if (!dir.empty()) {
        if (!(store_dir.size() > dir.size() + 1 &&
              store_dir.compare(store_dir.size() - dir.size(), dir.size(), dir) == 0 &&
              store_dir[store_dir.size() - dir.size() - 1] == '/'))
            return "";
    }
    return store_dir + "/" + name;
}

UploadCheck check_upload(const Request& r, const std::string& store_template) {
    const std::string* start = r.header("x-mongrel2-upload-start");
    const std::string* done = r.header("x-mongrel2-upload-done");
    UploadCheck out;
    if (!start && !done) return out;
    out.state = UploadCheck::State::Forged;
    if (!r.body.empty()) {
        out.why = "upload header on a request with an inline body";
        return out;
    }
    if (!start) {
        out.why = "upload-done without upload-start";
        return out;
    }
    if (!declares_body(r)) {
        out.why = "upload header on a request that declares no body";
        return out;
    }
    // A real first message may carry a client's forged -done: only the
    // second message overwrites it with the real path.
    out.finished = done && *done == *start;
    out.reported = *start;
    if (store_template.empty()) {
        out.state = UploadCheck::State::Refused;
        out.why = "upload refused: m2bridge has no --upload-store to check its path";
        return out;
    }
    out.file = upload_path_in_store(*start, store_template);
    if (out.file.empty()) {
        out.state = UploadCheck::State::Refused;
        out.why = "upload refused: path outside the upload store: " + *start;
        return out;
    }
    out.state = out.finished ? UploadCheck::State::Done : UploadCheck::State::Started;
    return out;
}

}  // namespace m2b
