// Fork bomb, bounded at 100000 attempts so that a broken sandbox cannot take the machine down.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>
int main() {
  int n = 0;
  for (int i = 0; i < 100000; ++i) {
    pid_t p = fork();
    if (p < 0) { std::printf("fork failed after %d: %s\n", n, std::strerror(errno)); break; }
    if (p == 0) { sleep(30); _exit(0); }
    ++n;
  }
  std::printf("forked %d\n", n);
  return 0;
}
