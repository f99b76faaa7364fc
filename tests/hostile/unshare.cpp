// Tries to make new namespaces: unshare (a user and PID namespace, a user namespace, a mount
// namespace), clone with CLONE_NEWUSER, clone3, setns into init's network namespace; then checks
// that threads and plain forks still work. Prints each outcome.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void report(const char *what, long rc) {
  if (rc < 0) std::printf("%s refused: %s\n", what, std::strerror(errno));
  else std::printf("%s DONE\n", what);
}
static void *work(void *) { return nullptr; }
int main() {
  report("UNSHARE_USER_PID", unshare(CLONE_NEWUSER | CLONE_NEWPID));
  report("UNSHARE_USER", unshare(CLONE_NEWUSER));
  report("UNSHARE_MOUNT", unshare(CLONE_NEWNS));
  long c = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (c == 0) _exit(0);
  if (c > 0) waitpid(c, nullptr, 0);
  report("CLONE_NEWUSER", c);
  unsigned long long args[11] = {0};  // struct clone_args: flags first, exit_signal at [4]
  args[0] = CLONE_NEWUSER;
  args[4] = SIGCHLD;
  long c3 = syscall(435 /* clone3 */, args, sizeof args);
  if (c3 == 0) _exit(0);
  if (c3 > 0) waitpid(c3, nullptr, 0);
  report("CLONE3", c3);
  int ns = open("/proc/1/ns/net", O_RDONLY);
  report("SETNS", ns < 0 ? ns : setns(ns, 0));
  pthread_t t;
  if (pthread_create(&t, nullptr, work, nullptr) == 0 && pthread_join(t, nullptr) == 0) std::printf("THREAD ok\n");
  pid_t p = fork();
  if (p == 0) _exit(7);
  int st = 0;
  if (p > 0 && waitpid(p, &st, 0) == p && WEXITSTATUS(st) == 7) std::printf("FORK ok\n");
  return 0;
}
