// The request body as a backend takes it, for every gateway: inline bytes
// straight from the request, or the upload file Mongrel2 wrote, read a chunk
// at a time as the backend takes it (pread: a short local disk read, not a
// wait on the network). A file shorter than its size fails the same way in
// every mode: a truncated body must never pass for a whole one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "adapters/gateway.h"

namespace m2b {

class RequestBodyReader {
public:
    enum class State {
        More,       // pending() has bytes
        Done,       // the whole body was taken
        ShortFile,  // the upload file ended before its size
    };

    // `body` must outlive the reader. `file_chunk`: bytes read from a file at a time.
    RequestBodyReader(const BodySource& body, size_t file_chunk) : body_(&body), file_chunk_(file_chunk) {}

    // The bytes not taken yet (at most one chunk of a file); empty when the
    // body is done or the file is short, as state() then says. Valid until
    // the next call.
    std::string_view pending();
    // The backend took the first `n` bytes of what pending() returned.
    void consume(size_t n);
    State state() const { return state_; }
    uint64_t size() const { return body_->size(); }
    bool from_file() const { return body_->file_fd >= 0; }

private:
    const BodySource* body_;
    size_t file_chunk_;
    std::string chunk_;  // the piece of the file read and not all taken yet
    size_t chunk_pos_ = 0;
    uint64_t offset_ = 0;  // inline: bytes taken; file: bytes read into chunk_ so far
    State state_ = State::More;
};

}  // namespace m2b
