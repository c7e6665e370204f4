#include "adapters/script_path.h"

#include <climits>
#include <cstdlib>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace m2b {

namespace {

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

ScriptTarget refuse(int status, std::string why) {
    ScriptTarget t;
    t.status = status;
    t.error = std::move(why);
    return t;
}

bool inside(const std::string& root, const std::string& path) {
    return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/');
}

}  // namespace

std::string mount_point(std::string_view pattern) {
    size_t end = pattern.find_first_of("([*+?^$%");
    std::string mount(pattern.substr(0, end));
    while (!mount.empty() && mount.back() == '/') mount.pop_back();
    return mount;
}

bool decode_segment(std::string_view in, std::string& out) {
    out.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
            if (hi < 0 || lo < 0) return false;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
            if (c == '/') return false;
        }
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
        out += c;
    }
    return true;
}

ScriptTarget resolve_script(const ScriptOptions& options, std::string_view pattern, std::string_view raw_path) {
    std::string mount = mount_point(pattern);
    std::string_view rest = raw_path;
    if (rest.substr(0, mount.size()) == mount && (rest.size() == mount.size() || rest[mount.size()] == '/')) {
        rest.remove_prefix(mount.size());
    } else {
        mount.clear();  // a pattern that is not a plain prefix of the path
    }

    // Decode each segment on its own, so an encoded '/' cannot make one, and
    // resolve '.' and '..' before anything is looked up (RFC 3875 §9.8).
    std::vector<std::string> segments;
    bool trailing_slash = !rest.empty() && rest.back() == '/';
    size_t pos = 0;
    std::string decoded;
    while (pos < rest.size()) {
        size_t slash = rest.find('/', pos);
        if (slash == std::string_view::npos) slash = rest.size();
        std::string_view raw = rest.substr(pos, slash - pos);
        pos = slash + 1;
        if (raw.empty()) continue;
        if (!decode_segment(raw, decoded)) return refuse(400, "bad escape, encoded '/' or control byte in the path");
        if (decoded == ".") continue;
        if (decoded == "..") {
            if (segments.empty()) return refuse(403, "'..' climbs above the mount point");
            segments.pop_back();
            continue;
        }
        segments.push_back(decoded);
    }
    auto join = [&](size_t from, size_t to) {
        std::string out;
        for (size_t i = from; i < to; ++i) {
            out += '/';
            out += segments[i];
        }
        return out;
    };

    ScriptTarget target;
    if (options.directory.empty()) {
        target.script_name = mount;
        target.path_info = join(0, segments.size());
        if (trailing_slash || (segments.empty() && !rest.empty())) target.path_info += "/";
        return target;
    }

    const std::string& root = options.directory;
    std::string current;
    current.reserve(root.size() + rest.size() + options.index.size() + 2);  // grown once, not per segment
    current = root;
    size_t i = 0;
    struct stat st {};
    // lstat each step: without a symlink on the way the path is already
    // canonical (root is, and segments hold no '.', '..' or '/'), so realpath
    // and its readlink calls are needed only when a link was crossed.
    bool crossed_link = false;
    auto look = [&](const std::string& path) {
        if (lstat(path.c_str(), &st) != 0) return false;
        if (S_ISLNK(st.st_mode)) {
            crossed_link = true;
            return stat(path.c_str(), &st) == 0;
        }
        return true;
    };
    for (; i < segments.size(); ++i) {
        current += '/';
        current += segments[i];
        if (!look(current)) return refuse(crossed_link ? 403 : 404, "no such script: " + current);
        if (!S_ISDIR(st.st_mode)) break;
    }
    if (i == segments.size()) {
        // The path names a directory: its index script, if one is configured.
        if (options.index.empty()) return refuse(404, "path is a directory and no index is set");
        current += "/" + options.index;
        if (!look(current)) return refuse(404, "no index script: " + current);
        segments.push_back(options.index);
        trailing_slash = false;
    }
    if (!S_ISREG(st.st_mode)) return refuse(403, "not a regular file: " + current);
    std::string real = crossed_link ? std::string() : current;
    if (crossed_link) {
        char resolved[PATH_MAX];
        if (!realpath(current.c_str(), resolved)) return refuse(404, "cannot resolve: " + current);
        real = resolved;
        if (!inside(root, real)) return refuse(403, "script resolves outside the directory: " + current);
    }
    if (options.require_executable && access(real.c_str(), X_OK) != 0)
        return refuse(403, "script is not executable: " + current);

    target.script_name = mount + join(0, i + 1);
    target.script_filename = real;
    target.path_info = join(i + 1, segments.size());
    if (trailing_slash) target.path_info += "/";
    return target;
}

}  // namespace m2b
