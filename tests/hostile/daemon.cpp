// Leaves a worker behind: argv[1] = "setsid" (one fork + setsid) or "double" (double fork);
// the worker execs `sleep argv[2]` so that the test can look for it by its command line.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
int main(int argc, char **argv) {
  bool twice = argc > 1 && std::strcmp(argv[1], "double") == 0;
  const char *secs = argc > 2 ? argv[2] : "3000";
  pid_t p = fork();
  if (p == 0) {
    setsid();
    if (twice && fork() != 0) _exit(0);
    for (int fd = 0; fd < 3; ++fd) close(fd);
    execlp("sleep", "sleep", secs, static_cast<char *>(nullptr));
    _exit(127);
  }
  usleep(200000);  // let the worker start
  std::printf("PASS result=42\n");
  return 0;
}
