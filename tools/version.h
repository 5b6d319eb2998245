// The commit dsv4 was built from (`dsv4 --version`), written at build time by cmake/version.cmake.
#pragma once

namespace dsv4 {
extern const char* const version_string;
}
