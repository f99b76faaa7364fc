// Ignores SIGTERM (and SIGINT, SIGHUP) and sleeps forever.
#include <csignal>
#include <cstdio>
#include <unistd.h>
int main() {
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  std::printf("ignoring\n");
  std::fflush(stdout);
  for (;;) pause();
}
