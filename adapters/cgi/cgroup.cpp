#include "adapters/cgi/cgroup.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string_view>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace m2b {

namespace {

bool write_file(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    int saved = errno;
    ::close(fd);
    errno = saved;
    return ok;
}

// Our place in the v2 hierarchy: the "0::/PATH" line of /proc/self/cgroup.
std::string own_cgroup() {
    std::ifstream in("/proc/self/cgroup");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0) return line.substr(3);
    return "";
}

// mountinfo escapes blanks in paths as \040 (octal).
std::string unescape(const std::string& s) {
    auto octal = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// The cgroup2 mount: "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [TAGS] - cgroup2 SOURCE OPTIONS".
// `root` is the part of the hierarchy the mount shows (not "/" inside some containers).
bool cgroup2_mount(std::string& root, std::string& mount_point) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        size_t dash = line.find(" - ");
        if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
        std::istringstream fields(line.substr(0, dash));
        std::string id, parent, device;
        fields >> id >> parent >> device >> root >> mount_point;
        root = unescape(root);
        mount_point = unescape(mount_point);
        return !mount_point.empty();
    }
    return false;
}

std::vector<std::string> subgroups(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (e->d_type == DT_DIR && e->d_name[0] != '.') out.push_back(dir + "/" + e->d_name);
        closedir(d);
    }
    return out;
}

}  // namespace

ScriptCgroups::ScriptCgroups() {
    std::string own = own_cgroup();
    std::string mount_root, mount_point;
    if (own.empty()) {
        why_not_ = "no cgroup v2 line in /proc/self/cgroup";
        return;
    }
    if (!cgroup2_mount(mount_root, mount_point)) {
        why_not_ = "no cgroup2 file system mounted";
        return;
    }
    if (mount_root != "/" && own != mount_root && own.rfind(mount_root + "/", 0) != 0) {
        why_not_ = "our cgroup " + own + " is outside the cgroup2 mount";
        return;
    }
    std::string dir = mount_point + (mount_root == "/" ? own : own.substr(mount_root.size()));
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    // A process may start in a cgroup below ours only if we may write the
    // cgroup.procs of both (their common ancestor is ours).
    if (access((dir + "/cgroup.procs").c_str(), W_OK) != 0) {
        why_not_ = dir + "/cgroup.procs: " + strerror(errno);
        return;
    }
    // Scripts start inside their cgroup through clone3, which a seccomp
    // filter may refuse (ENOSYS); a bad size gives EINVAL where it exists.
    if (syscall(SYS_clone3, nullptr, 0) != -1 || errno == ENOSYS) {
        why_not_ = "clone3 is not available";
        return;
    }
    static unsigned gateways = 0;  // the loop's thread only
    std::string root = dir + "/m2bridge-scripts." + std::to_string(getpid()) + "." + std::to_string(++gateways);
    if (mkdir(root.c_str(), 0755) != 0 && errno != EEXIST) {
        why_not_ = "cannot create " + root + ": " + strerror(errno);
        return;
    }
    // cgroup.kill (Linux 5.14; not in the root cgroup, hence checked here)
    // kills a whole cgroup at once, processes forking meanwhile included.
    if (access((root + "/cgroup.kill").c_str(), F_OK) != 0) {
        rmdir(root.c_str());
        why_not_ = "no cgroup.kill (Linux 5.14 or later)";
        return;
    }
    root_ = root;
}

ScriptCgroups::~ScriptCgroups() {
    if (!enabled()) return;
    auto groups = subgroups(root_);
    kill(root_);  // the whole subtree
    // SIGKILL takes effect quickly but not at once, and a populated cgroup cannot
    // be removed: wait for it, bounded, as m2bridge exits.
    for (int i = 0; i < 100 && state(root_) == GroupState::Populated; ++i) usleep(10 * 1000);
    for (const auto& group : groups) remove(group);
    remove(root_);
}

ScriptCgroups::GroupState ScriptCgroups::state(const std::string& group) {
    Handles& h = handles_[group];
    if (!h.events) h.events.reset(::open((group + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC));
    char text[256];
    ssize_t n = h.events ? ::pread(h.events.get(), text, sizeof text, 0) : -1;
    if (n <= 0) {  // removed from outside
        handles_.erase(group);
        return GroupState::Gone;
    }
    // "populated 1" on a line of its own; the file is written afresh for each read.
    std::string_view events(text, static_cast<size_t>(n));
    for (size_t at = 0; at < events.size();) {
        size_t end = std::min(events.find('\n', at), events.size());
        if (events.substr(at, end - at) == "populated 1") return GroupState::Populated;
        at = end + 1;
    }
    return GroupState::Empty;
}

int ScriptCgroups::directory(const std::string& group) {
    Handles& h = handles_[group];
    if (!h.directory) h.directory.reset(::open(group.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return h.directory.get();
}

void ScriptCgroups::remove(const std::string& group) {
    handles_.erase(group);
    rmdir(group.c_str());
}

namespace {
constexpr size_t kEmptyKept = 64;  // about the scripts that run at once, whatever --max-procs
}  // namespace

std::string ScriptCgroups::create() {
    if (!enabled()) return "";
    if (!empty_.empty()) {
        std::string group = std::move(empty_.back());
        empty_.pop_back();
        return group;
    }
    std::string group = root_ + "/req-" + std::to_string(next_id_++);
    if (mkdir(group.c_str(), 0755) != 0) return "";
    return group;
}

void ScriptCgroups::kill(const std::string& group) {
    if (!group.empty()) write_file(group + "/cgroup.kill", "1");
}

void ScriptCgroups::release(const std::string& group) {
    if (group.empty()) return;
    released_.push_back(group);
    sweep();
}

void ScriptCgroups::sweep() {
    std::erase_if(released_, [this](const std::string& group) {
        switch (state(group)) {
            case GroupState::Populated:  // a script, or what it left behind, is still there
                handles_.erase(group);
                return false;
            case GroupState::Gone:  // never handed out again
                doomed_.erase(group);
                return true;
            case GroupState::Empty:
                break;
        }
        if (!doomed_.erase(group) && empty_.size() < kEmptyKept)
            empty_.push_back(group);
        else
            remove(group);
        return true;
    });
}

}  // namespace m2b
