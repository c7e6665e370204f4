// The body of an X-Sendfile reply: a range of an open file handed to the
// reply a chunk at a time on the loop, as fast as the client side takes it
// (paused while the reply's buffer is full), so memory stays at one chunk
// plus the reply buffer whatever the file's size.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/life_token.h"
#include "base/loop.h"
#include "base/unique_fd.h"

namespace m2b {

class FileBody {
public:
    using OnBytes = std::function<void(std::string_view)>;
    using OnEnd = std::function<void(const std::string& error)>;  // empty: all sent

    // Starts on the next turn; callbacks never run from inside a call to this object.
    FileBody(Loop& loop, UniqueFd fd, uint64_t offset, uint64_t length, OnBytes on_bytes, OnEnd on_end);
    ~FileBody();
    FileBody(const FileBody&) = delete;
    FileBody& operator=(const FileBody&) = delete;

    // Each body holds a descriptor for as long as its client reads: a bound on
    // them all, so slow clients cannot take every descriptor (beyond it, 503).
    static constexpr size_t kMaxOpen = 1024;
    static size_t open_count() { return open_count_; }

    void set_paused(bool paused);
    // No more callbacks. The owner may be inside one: it destroys this object
    // with Loop::dispose_later, never from the callback itself.
    void cancel();

    static constexpr size_t kChunk = 64 * 1024;

private:
    void schedule();
    void pump();

    Loop& loop_;
    UniqueFd fd_;
    uint64_t offset_;
    uint64_t left_;
    OnBytes on_bytes_;
    OnEnd on_end_;
    bool paused_ = false;
    bool scheduled_ = false;
    std::unique_ptr<char[]> chunk_;
    LifeToken life_;
    static inline size_t open_count_ = 0;
};

}  // namespace m2b
