// dsv4 run: not written yet.
#include "tools/commands.h"

namespace dsv4::tools {

void add_run(CLI::App&, std::vector<Command>&) {}

}  // namespace dsv4::tools
