// Errors: every failure a user can cause or meet (bad input, a library call that
// failed, an unsupported request) is a tessera::Error with a message that names
// what failed. `main` catches it and prints one line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds a message from any streamable parts: fail("layer ", name, " not found").
template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream message;
  (message << ... << std::forward<Parts>(parts));
  throw Error(message.str());
}

}  // namespace tessera
