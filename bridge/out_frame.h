// One message for Mongrel2 while it is being written: a malloc'd block with
// room in front. The envelope (and a collected reply's head), then the ZMTP
// frame head, go in front of body bytes already in place, and the finished
// block is what the socket write reads (ZmtpConnection::send), so a response
// byte is copied once in user space: into this block.
#pragma once

#include <cstddef>
#include <string_view>

namespace m2b {

class OutFrame {
public:
    // Room in front for an envelope "SENDER LEN:ID, " with a UUID sender.
    static constexpr size_t kEnvelopeRoom = 96;

    OutFrame() = default;
    // Room for `capacity` bytes, and `headroom` more in front. Throws std::bad_alloc.
    OutFrame(size_t headroom, size_t capacity);
    ~OutFrame();
    OutFrame(OutFrame&& other) noexcept;
    OutFrame& operator=(OutFrame&& other) noexcept;
    OutFrame(const OutFrame&) = delete;
    OutFrame& operator=(const OutFrame&) = delete;

    bool allocated() const { return block_ != nullptr; }
    size_t size() const { return end_ - begin_; }
    bool empty() const { return begin_ == end_; }
    size_t headroom() const { return begin_; }
    size_t tailroom() const { return capacity_ - end_; }
    std::string_view view() const { return {block_ ? block_ + begin_ : nullptr, size()}; }

    // Appends what fits of `bytes` and says how much that was.
    size_t append(std::string_view bytes);
    // Puts `bytes` in front, keeping `keep` bytes of room before them; false,
    // and nothing changed, without room for both.
    bool prepend(std::string_view bytes, size_t keep = 0);
    // Room for `bytes` more at the end: allocates, or grows by at least half
    // (realloc: a large block grows without a copy).
    void reserve_tail(size_t bytes);
    void consume(size_t n);  // the first n bytes went out another way
    void truncate(size_t n);  // keeps the first n bytes

    // Gives unused room at the end (more than a little) back to malloc: for a
    // frame that waits in a queue.
    void shrink_to_fit();
    // The memory the block holds.
    size_t footprint() const { return block_ ? capacity_ : 0; }

private:
    char* block_ = nullptr;
    size_t begin_ = 0;  // offsets into block_
    size_t end_ = 0;
    size_t capacity_ = 0;
};

}  // namespace m2b
