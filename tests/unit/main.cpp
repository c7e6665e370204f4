#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "base/log.h"

int main(int argc, char** argv) {
    // The handler and transaction tests log every refusal they provoke; keep the report readable.
    m2b::log::set_level(m2b::log::Level::Error);
    return doctest::Context(argc, argv).run();
}
