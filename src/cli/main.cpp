#include <cstdio>

int main() {
  std::puts("tessera: command line not assembled yet");
  return 1;
}
