// Tries to reach unix socket files given as arguments (a host daemon's, world-writable, in a
// read-only bound folder): a stream connect and a datagram sent to each. Prints what happened.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static sockaddr_un address(const char *path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  return a;
}
int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    sockaddr_un a = address(argv[i]);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) std::printf("STREAM %s socket failed: %s\n", argv[i], std::strerror(errno));
    else if (connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) std::printf("STREAM %s CONNECTED\n", argv[i]);
    else std::printf("STREAM %s blocked: %s\n", argv[i], std::strerror(errno));
    if (s >= 0) close(s);
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (d < 0) { std::printf("DGRAM %s socket failed: %s\n", argv[i], std::strerror(errno)); continue; }
    if (sendto(d, "hi", 2, 0, reinterpret_cast<sockaddr *>(&a), sizeof a) == 2) std::printf("DGRAM %s SENT\n", argv[i]);
    else std::printf("DGRAM %s blocked: %s\n", argv[i], std::strerror(errno));
    close(d);
  }
  int sv[2];  // a pair needs no address and stays allowed
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && write(sv[0], "x", 1) == 1) std::printf("PAIR ok\n");
  else std::printf("PAIR failed: %s\n", std::strerror(errno));
  return 0;
}
