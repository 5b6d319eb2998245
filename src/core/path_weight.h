// "PATH:WEIGHT" on the command line (training sources, models to average): the tail after the
// last ':' is the weight when all of it parses as a number, else the whole text is the path.
#pragma once

#include <string>

namespace dsv4 {

struct PathWeight {
  std::string path;
  double weight = 1;  // not checked: the caller says what a bad one means
};

PathWeight split_path_weight(const std::string& spec);

}  // namespace dsv4
