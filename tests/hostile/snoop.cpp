// Reads every path given and every /proc/*/environ; prints "READ <path> <bytes>" or "DENIED <path> <error>",
// and "ENVIRON <pid> CANARY" where argv[1] (a canary value) shows up in some environment.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <string>
static std::string slurp(const char *p, bool *ok) {
  FILE *f = std::fopen(p, "rb");
  std::string s;
  *ok = f != nullptr;
  if (!f) return std::strerror(errno);
  char b[4096];
  size_t n;
  while ((n = std::fread(b, 1, sizeof b, f)) > 0) s.append(b, n);
  std::fclose(f);
  return s;
}
int main(int argc, char **argv) {
  const char *canary = argc > 1 ? argv[1] : "none";
  for (int i = 2; i < argc; ++i) {
    bool ok;
    std::string s = slurp(argv[i], &ok);
    if (ok) std::printf("READ %s %zu%s\n", argv[i], s.size(), s.find(canary) != std::string::npos ? " CANARY" : "");
    else std::printf("DENIED %s %s\n", argv[i], s.c_str());
  }
  DIR *d = opendir("/proc");
  int seen = 0;
  for (dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    bool ok;
    std::string s = slurp(("/proc/" + std::string(e->d_name) + "/environ").c_str(), &ok);
    ++seen;
    if (ok && s.find(canary) != std::string::npos) std::printf("ENVIRON %s CANARY\n", e->d_name);
  }
  std::printf("PROCS %d\n", seen);
  return 0;
}
