// Tries to kill its parent and then everything it can signal.
#include <csignal>
#include <cstdio>
#include <unistd.h>
int main() {
  std::printf("parent %d\n", static_cast<int>(getppid()));
  std::fflush(stdout);
  kill(getppid(), SIGKILL);
  kill(-1, SIGKILL);
  sleep(2);
  std::printf("still here\n");
  return 0;
}
