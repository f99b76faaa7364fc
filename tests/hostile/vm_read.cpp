// Two children of the program: one holds argv[1] in its memory and sleeps, the other (its
// sibling) tries to read it with process_vm_readv and to attach to it with ptrace, and prints
// "READ <text>" or what stopped it.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
static char secret[64];
int main(int argc, char **argv) {
  std::strncpy(secret, argc > 1 ? argv[1] : "secret", sizeof secret - 1);
  std::fflush(stdout);
  pid_t holder = fork();
  if (holder == 0) {
    std::strncpy(secret, argc > 1 ? argv[1] : "secret", sizeof secret - 1);  // its own copy
    pause();
    _exit(0);
  }
  pid_t reader = fork();
  if (reader == 0) {
    char buf[64] = {0};
    iovec local{buf, sizeof buf - 1}, remote{secret, sizeof buf - 1};  // same address in the sibling
    ssize_t n = process_vm_readv(holder, &local, 1, &remote, 1, 0);
    if (n > 0) std::printf("READ %s\n", buf);
    else std::printf("VM_READ refused: %s\n", std::strerror(errno));
    if (ptrace(PTRACE_ATTACH, holder, nullptr, nullptr) == 0) std::printf("ATTACH DONE\n");
    else std::printf("ATTACH refused: %s\n", std::strerror(errno));
    std::fflush(stdout);
    _exit(0);
  }
  waitpid(reader, nullptr, 0);
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  std::printf("done\n");
  return 0;
}
