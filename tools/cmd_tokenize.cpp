// dsv4 tokenize: not written yet.
#include "tools/commands.h"

namespace dsv4::tools {

void add_tokenize(CLI::App&, std::vector<Command>&) {}

}  // namespace dsv4::tools
