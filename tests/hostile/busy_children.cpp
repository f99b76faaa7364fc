// Two children each burn argv[1] CPU seconds and exit unreaped; the parent burns the same and exits.
#include <cstdlib>
#include <ctime>
#include <unistd.h>
static void burn(double s) {
  volatile unsigned long x = 0;
  while (static_cast<double>(std::clock()) / CLOCKS_PER_SEC < s) ++x;
}
int main(int argc, char **argv) {
  double s = argc > 1 ? std::atof(argv[1]) : 0.5;
  int fds[2];
  if (pipe(fds) != 0) return 1;
  for (int i = 0; i < 2; ++i) {
    if (fork() == 0) { close(fds[0]); burn(s); _exit(0); }  // the pipe closes when it exits
  }
  close(fds[1]);
  burn(s);
  char c;
  while (read(fds[0], &c, 1) > 0) {}  // both children done (never waited for)
  return 0;
}
