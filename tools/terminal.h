// What the terminal allows: colour (a terminal, NO_COLOR unset or empty, TERM not "dumb"; see
// no-color.org) and its width, for output that redraws a line in place.
#pragma once

namespace dsv4::tools {

bool color_enabled(int fd);  // fd: 1 or 2
int terminal_width(int fd);  // columns, or 0 when fd is not a terminal

}  // namespace dsv4::tools
