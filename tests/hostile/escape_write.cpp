// Tries to create argv[2..] (absolute paths outside its folder); prints WROTE or DENIED per path,
// and writes argv[1] into ./inside.txt (its own folder, which must work).
#include <cerrno>
#include <cstdio>
#include <cstring>
int main(int argc, char **argv) {
  for (int i = 2; i < argc; ++i) {
    FILE *f = std::fopen(argv[i], "w");
    if (f) { std::fputs(argv[1], f); std::fclose(f); std::printf("WROTE %s\n", argv[i]); }
    else std::printf("DENIED %s %s\n", argv[i], std::strerror(errno));
  }
  FILE *f = std::fopen("inside.txt", "w");
  if (!f) return 2;
  std::fputs(argv[1], f);
  std::fclose(f);
  std::printf("INSIDE ok\n");
  return 0;
}
