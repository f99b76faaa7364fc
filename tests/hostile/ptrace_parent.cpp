// Goes after the report shell that started it (its parent): ptrace attach and seize, its memory
// and its open files through /proc, a stop signal. Prints each attempt's outcome, then "still here".
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/ptrace.h>
#include <unistd.h>
static void report(const char *what, long rc) {
  if (rc < 0) std::printf("%s refused: %s\n", what, std::strerror(errno));
  else std::printf("%s DONE\n", what);
}
int main() {
  pid_t parent = getppid();
  std::printf("parent %d\n", static_cast<int>(parent));
  report("ATTACH", ptrace(PTRACE_ATTACH, parent, nullptr, nullptr));
  report("SEIZE", ptrace(PTRACE_SEIZE, parent, nullptr, nullptr));
  std::string mem = "/proc/" + std::to_string(parent) + "/mem";
  int fd = open(mem.c_str(), O_RDWR);
  report("MEM", fd);
  if (fd >= 0) close(fd);
  int opened = -1, err = 0;  // its open files (the report pipe among them), to write a forged report
  for (int n = 0; n < 64 && opened < 0; ++n) {
    opened = open(("/proc/" + std::to_string(parent) + "/fd/" + std::to_string(n)).c_str(), O_WRONLY);
    if (opened < 0 && errno != ENOENT) err = errno;
  }
  if (opened >= 0) { std::printf("FDWRITE DONE\n"); close(opened); }
  else std::printf("FDWRITE refused: %s\n", std::strerror(err));
  report("STOP", kill(parent, SIGSTOP));
  std::printf("still here\n");
  return 0;
}
