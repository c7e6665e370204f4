#include "bridge/file_body.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace m2b {

namespace {
constexpr int kChunksPerTurn = 4;  // then other connections get their turn
}

FileBody::FileBody(Loop& loop, UniqueFd fd, uint64_t offset, uint64_t length, OnBytes on_bytes, OnEnd on_end)
    : loop_(loop), fd_(std::move(fd)), offset_(offset), left_(length), on_bytes_(std::move(on_bytes)),
      on_end_(std::move(on_end)), chunk_(std::make_unique<char[]>(kChunk)) {
    ++open_count_;
    schedule();
}

FileBody::~FileBody() { --open_count_; }

void FileBody::set_paused(bool paused) {
    paused_ = paused;
    if (!paused_) schedule();
}

void FileBody::cancel() {
    fd_.reset();
    paused_ = true;
}

void FileBody::schedule() {
    if (scheduled_ || !fd_) return;
    scheduled_ = true;
    loop_.post(life_.guard([this] {
        scheduled_ = false;
        pump();
    }));
}

// A regular file is always "ready" for epoll, so reading is paced by the loop
// instead: a few chunks per turn, then the next turn.
void FileBody::pump() {
    for (int i = 0; i < kChunksPerTurn && !paused_ && fd_; ++i) {
        if (left_ == 0) {
            fd_.reset();
            on_end_("");
            return;
        }
        size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, left_));
        ssize_t n = pread(fd_.get(), chunk_.get(), want, static_cast<off_t>(offset_));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fd_.reset();
            on_end_(n == 0 ? "file shorter than when it was opened" : std::string("read: ") + strerror(errno));
            return;
        }
        offset_ += static_cast<uint64_t>(n);
        left_ -= static_cast<uint64_t>(n);
        on_bytes_(std::string_view(chunk_.get(), static_cast<size_t>(n)));  // may pause or cancel us
    }
    if (!paused_ && fd_) schedule();
}

}  // namespace m2b
