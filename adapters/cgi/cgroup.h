// Scripts' cgroups (v2): a script's grandchild that calls setsid() leaves the
// process group m2bridge kills, but it cannot leave its cgroup. Each request
// runs in OUR_CGROUP/m2bridge-scripts.PID.K/req-N (K: one per gateway, so a
// handler removed by a reload kills its own scripts only; the script is cloned
// straight into it), so killing a request reaches all of its processes, and
// m2bridge's exit reaches every script process left. Where no cgroup can be made, every
// call does nothing and scripts have their process groups only.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/unique_fd.h"

namespace m2b {

class ScriptCgroups {
public:
    ScriptCgroups();   // creates the scripts' cgroup, or says in why_not() why not
    ~ScriptCgroups();  // kills every process left in it and removes it
    ScriptCgroups(const ScriptCgroups&) = delete;
    ScriptCgroups& operator=(const ScriptCgroups&) = delete;

    bool enabled() const { return !root_.empty(); }
    const std::string& path() const { return root_; }
    const std::string& why_not() const { return why_not_; }

    // An empty cgroup for one request; "" when it cannot be made.
    std::string create();
    // The group's directory, open, for clone3's CLONE_INTO_CGROUP; -1 with errno set.
    int directory(const std::string& group);
    // SIGKILL to every process in `group` (cgroup.kill).
    void kill(const std::string& group);
    // A kill of `group` may still come (after a grace time): it must not be
    // handed to another request, so it is removed once empty.
    void never_reuse(const std::string& group) {
        if (!group.empty()) doomed_.insert(group);
    }
    // The request is over: once `group` is empty (now, or at a later sweep())
    // it is kept for another request, or removed when enough are kept.
    void release(const std::string& group);
    // Looks again at released groups: call when processes may have exited.
    void sweep();

private:
    enum class GroupState { Empty, Populated, Gone };
    GroupState state(const std::string& group);
    void remove(const std::string& group);  // closes what is open in it, then rmdir

    // What is open of each group in use or kept empty, opened once and read again with
    // pread: a path lookup in the cgroup file system for every script cost as much as its
    // pipes. A released group that is still populated keeps nothing open (processes a
    // script left behind could otherwise hold descriptors without bound).
    struct Handles {
        UniqueFd directory;
        UniqueFd events;  // cgroup.events
    };
    std::unordered_map<std::string, Handles> handles_;
    std::string root_;
    std::string why_not_;
    uint64_t next_id_ = 1;
    std::vector<std::string> released_;  // not yet empty when released
    // Empty, ready for the next request: making and removing a cgroup costs
    // milliseconds each (the kernel waits for RCU grace periods), more than
    // the script's own start.
    std::vector<std::string> empty_;
    std::unordered_set<std::string> doomed_;
};

}  // namespace m2b
