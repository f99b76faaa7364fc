// Infinite loop: only the time limit ends it.
int main() { volatile unsigned long x = 0; for (;;) ++x; }
