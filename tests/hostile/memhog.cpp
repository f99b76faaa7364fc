// Allocates and touches memory in 16 MB steps up to argv[1] MB.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
int main(int argc, char **argv) {
  long want = argc > 1 ? std::atol(argv[1]) : 4096, got = 0;
  while (got < want) {
    char *p = static_cast<char *>(std::malloc(16 << 20));
    if (!p) { std::printf("alloc failed at %ld MB\n", got); return 3; }
    std::memset(p, 1, 16 << 20);
    got += 16;
    usleep(2000);
  }
  std::printf("allocated %ld MB\n", got);
  return 0;
}
