// Children whose owner reaps them itself through a pidfd (the FastCGI
// spawner). The CGI gateway, which reaps by waitpid as the process's child
// subreaper, leaves them alone so their exit status reaches their owner.
#pragma once

#include <sys/types.h>
#include <unordered_set>

namespace m2b::child_claims {

inline std::unordered_set<pid_t>& claimed() {
    static std::unordered_set<pid_t> pids;  // one loop thread: no lock
    return pids;
}
inline void claim(pid_t pid) { claimed().insert(pid); }
inline void release(pid_t pid) { claimed().erase(pid); }
inline bool is_claimed(pid_t pid) { return claimed().count(pid) > 0; }

}  // namespace m2b::child_claims
