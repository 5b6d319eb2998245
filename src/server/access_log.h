// One line on stderr per HTTP request, written when its answer has been sent (a stream: when
// it ended): time, client, method, path, status, milliseconds, and for generations the prompt,
// cached and completion tokens. The prompt's text only with dsv4 serve --log-prompts.
//
// A connection's requests are served one after another by one thread (connection_pool.h), so a
// request's figures are kept in that thread's record: begin() at routing, the handler and its
// stream fill it in, write() writes the line and clears it.
#pragma once

#include <string>

namespace dsv4 {

struct RequestRecord {
  int prompt_tokens = -1;  // -1: not a generation
  int cached_tokens = 0, completion_tokens = 0;
  std::string prompt_text;  // set only when prompts are logged
};

namespace access_log {

void begin();                 // the request was read: its clock starts
RequestRecord& current();     // this thread's request
double seconds();             // since begin() (0 if it was not called)
// The answer was sent: writes the line, then the record is cleared.
void write(const std::string& remote, const std::string& method, const std::string& path, int status,
           bool log_prompts);
void reset();                 // clears the record without a line

}  // namespace access_log

}  // namespace dsv4
