#include "adapters/request_body.h"

#include <algorithm>
#include <unistd.h>

namespace m2b {

std::string_view RequestBodyReader::pending() {
    if (chunk_pos_ < chunk_.size()) return std::string_view(chunk_).substr(chunk_pos_);
    if (state_ != State::More) return {};
    if (offset_ >= body_->size()) {
        state_ = State::Done;
        return {};
    }
    if (body_->file_fd < 0) return body_->bytes.substr(static_cast<size_t>(offset_));
    chunk_.resize(static_cast<size_t>(std::min<uint64_t>(file_chunk_, body_->length - offset_)));
    ssize_t n = pread(body_->file_fd, chunk_.data(), chunk_.size(), static_cast<off_t>(offset_));
    if (n <= 0) {
        chunk_.clear();
        chunk_pos_ = 0;
        state_ = State::ShortFile;
        return {};
    }
    chunk_.resize(static_cast<size_t>(n));
    chunk_pos_ = 0;
    offset_ += static_cast<uint64_t>(n);
    return chunk_;
}

void RequestBodyReader::consume(size_t n) {
    if (chunk_pos_ < chunk_.size())
        chunk_pos_ += n;
    else
        offset_ += n;
}

}  // namespace m2b
