// Writes argv[1] MB to stdout, framed by FIRST and LAST lines.
#include <cstdio>
#include <cstdlib>
#include <cstring>
int main(int argc, char **argv) {
  long mb = argc > 1 ? std::atol(argv[1]) : 64;
  static char line[1024];
  std::memset(line, 'y', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  std::fputs("FIRST\n", stdout);
  for (long i = 0; i < mb * 1024; ++i) std::fwrite(line, 1, sizeof line, stdout);
  std::fputs("LAST\n", stdout);
  return 0;
}
