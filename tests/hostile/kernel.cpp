// Tries calls that widen the kernel surface a program reaches: bpf, perf_event_open,
// userfaultfd, io_uring_setup, keyctl, mount, kexec_load, and sockets other than AF_UNIX.
// Prints "<name> refused: <error>" or "<name> DONE".
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
static void report(const char *what, long rc) {
  if (rc < 0) std::printf("%s refused: %s\n", what, std::strerror(errno));
  else std::printf("%s DONE\n", what);
}
int main() {
  char attr[128] = {0};
  report("BPF", syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof attr));
  report("PERF", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
  report("USERFAULTFD", syscall(SYS_userfaultfd, 0));
  report("IO_URING", syscall(425 /* io_uring_setup */, 4, attr));
  report("KEYCTL", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
  report("MOUNT", mount("none", "/tmp", "tmpfs", 0, nullptr));
  report("KEXEC", syscall(SYS_kexec_load, 0, 0, nullptr, 0));
  report("INET", socket(AF_INET, SOCK_STREAM, 0));
  report("INET6", socket(AF_INET6, SOCK_DGRAM, 0));
  report("NETLINK", socket(AF_NETLINK, SOCK_RAW, 0));
  return 0;
}
