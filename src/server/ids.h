// Ids of answers and tool calls ("chatcmpl-", "call_", "msg_", "toolu_" + 16 hex digits).
#pragma once

#include <string>

namespace dsv4 {

std::string random_id(const char* prefix);

}  // namespace dsv4
