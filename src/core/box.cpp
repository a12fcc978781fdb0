#include "tessera/box.hpp"

#include <algorithm>
#include <sstream>

namespace tessera {

Box Box::intersect(const Box& o) const {
  Box b{std::max(x0, o.x0), std::max(y0, o.y0), std::min(x1, o.x1), std::min(y1, o.y1)};
  if (b.empty()) return {};
  return b;
}

std::string Box::describe() const {
  std::ostringstream text;
  text << "x [" << x0 << "," << x1 << ") y [" << y0 << "," << y1 << ")";
  return text.str();
}

}  // namespace tessera
