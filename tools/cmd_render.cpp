// dsv4 render: not written yet.
#include "tools/commands.h"

namespace dsv4::tools {

void add_render(CLI::App&, std::vector<Command>&) {}

}  // namespace dsv4::tools
