// libFuzzer target: chat messages (JSON: an array of messages, or {"messages", "tools"} as
// `dsv4 render` takes them) through the V4 encoder in each mode. Bad messages throw dsv4::Error (or nlohmann's errors for
// malformed JSON); nothing may crash or recurse past the stack.
#include <cstdint>
#include <string>

#include "chat/encode.h"
#include "core/check.h"
#include "core/json_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::ordered_json messages;
  try {
    messages = dsv4::parse_json<nlohmann::ordered_json>(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const std::exception&) {
    return 0;
  }
  try {
    if (messages.is_object() && messages.contains("messages"))
      messages = dsv4::chat::attach_tools(messages["messages"], messages.value("tools", nlohmann::ordered_json()));
  } catch (const dsv4::Error&) {
    return 0;
  }
  for (const auto mode : {dsv4::chat::ThinkingMode::chat, dsv4::chat::ThinkingMode::thinking}) {
    try {
      dsv4::chat::EncodeOptions o;
      o.thinking_mode = mode;
      (void)dsv4::chat::encode_messages(messages, o);
    } catch (const dsv4::Error&) {
    }
  }
  return 0;
}
