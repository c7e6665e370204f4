#include "bridge/out_frame.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace m2b {

OutFrame::OutFrame(size_t headroom, size_t capacity)
    : begin_(headroom), end_(begin_), capacity_(begin_ + capacity) {
    block_ = static_cast<char*>(std::malloc(std::max<size_t>(capacity_, 1)));
    if (!block_) throw std::bad_alloc();
}

OutFrame::~OutFrame() { std::free(block_); }

OutFrame::OutFrame(OutFrame&& other) noexcept
    : block_(std::exchange(other.block_, nullptr)), begin_(std::exchange(other.begin_, 0)),
      end_(std::exchange(other.end_, 0)), capacity_(std::exchange(other.capacity_, 0)) {}

OutFrame& OutFrame::operator=(OutFrame&& other) noexcept {
    if (this != &other) {
        std::free(block_);
        block_ = std::exchange(other.block_, nullptr);
        begin_ = std::exchange(other.begin_, 0);
        end_ = std::exchange(other.end_, 0);
        capacity_ = std::exchange(other.capacity_, 0);
    }
    return *this;
}

size_t OutFrame::append(std::string_view bytes) {
    size_t n = std::min(bytes.size(), tailroom());
    if (n == 0) return 0;
    std::memcpy(block_ + end_, bytes.data(), n);
    end_ += n;
    return n;
}

bool OutFrame::prepend(std::string_view bytes, size_t keep) {
    if (!block_ || bytes.size() + keep > headroom()) return false;
    begin_ -= bytes.size();
    if (!bytes.empty()) std::memcpy(block_ + begin_, bytes.data(), bytes.size());
    return true;
}

void OutFrame::reserve_tail(size_t bytes) {
    if (!block_) {
        *this = OutFrame(0, bytes);
        return;
    }
    if (tailroom() >= bytes) return;
    size_t capacity = std::max(end_ + bytes, capacity_ + capacity_ / 2);
    auto* grown = static_cast<char*>(std::realloc(block_, capacity));
    if (!grown) throw std::bad_alloc();
    block_ = grown;
    capacity_ = capacity;
}

void OutFrame::consume(size_t n) { begin_ += std::min(n, size()); }

void OutFrame::truncate(size_t n) { end_ = begin_ + std::min(n, size()); }

void OutFrame::shrink_to_fit() {
    // Shrinking in place: glibc splits the chunk (or mremaps a mapped one) without moving it.
    if (!block_ || capacity_ - end_ <= 256) return;
    if (auto* shrunk = static_cast<char*>(std::realloc(block_, end_))) {
        block_ = shrunk;
        capacity_ = end_;
    }
}

}  // namespace m2b
