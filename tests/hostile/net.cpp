// Tries TCP connections to 127.0.0.1:argv[1] and to a public address; prints what happened.
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
static void try_connect(const char *ip, int port, const char *label) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) { std::printf("%s socket failed: %s\n", label, std::strerror(errno)); return; }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) std::printf("%s CONNECTED\n", label);
  else std::printf("%s blocked: %s\n", label, std::strerror(errno));
  close(s);
}
int main(int argc, char **argv) {
  try_connect("127.0.0.1", argc > 1 ? std::atoi(argv[1]) : 80, "loopback");
  try_connect("1.1.1.1", 443, "internet");
  return 0;
}
