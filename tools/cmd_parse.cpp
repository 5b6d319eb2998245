// dsv4 parse: not written yet.
#include "tools/commands.h"

namespace dsv4::tools {

void add_parse(CLI::App&, std::vector<Command>&) {}

}  // namespace dsv4::tools
