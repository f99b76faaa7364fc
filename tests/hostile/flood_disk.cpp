// Fills its folder: argv[1] = "many" (1 MB files without end) or "one" (one file without end).
#include <cstdio>
#include <cstring>
#include <string>
int main(int argc, char **argv) {
  static char buf[1 << 20];
  std::memset(buf, 'd', sizeof buf);
  bool many = argc > 1 && std::strcmp(argv[1], "many") == 0;
  FILE *f = nullptr;
  for (long i = 0;; ++i) {
    if (many || !f) {
      if (f) std::fclose(f);
      f = std::fopen(("junk" + std::to_string(many ? i : 0)).c_str(), "w");
      if (!f) { std::perror("fopen"); return 4; }
    }
    if (std::fwrite(buf, 1, sizeof buf, f) != sizeof buf) { std::perror("fwrite"); return 5; }
    std::fflush(f);
  }
}
