// Prints a line, closes stdout and stderr, and never exits.
#include <cstdio>
#include <unistd.h>
int main() {
  std::printf("closing\n");
  std::fflush(stdout);
  close(1);
  close(2);
  for (;;) sleep(1);
}
