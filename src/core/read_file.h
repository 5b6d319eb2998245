// A whole file into a string (config.json, tokenizer.json, training text).
#pragma once

#include <string>

namespace dsv4 {

std::string read_file(const std::string& path);  // Error "<path>: cannot open" if unreadable

}  // namespace dsv4
