#pragma once
namespace m2b {
inline constexpr const char* kVersion = "0.1.0";
}
