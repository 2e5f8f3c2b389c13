// wc: counts the lines, words and bytes of its input (raw bytes on stdin) and
// writes them as JSON on stdout. A WASI command; build it with ./build-wc.sh.
#include <ctype.h>
#include <stdio.h>

int main(void) {
  unsigned long lines = 0, words = 0, bytes = 0;
  int in_word = 0, c;
  while ((c = getchar()) != EOF) {
    bytes++;
    if (c == '\n') lines++;
    if (isspace(c)) in_word = 0;
    else if (!in_word) in_word = 1, words++;
  }
  fprintf(stderr, "counted %lu bytes\n", bytes);  // a log line
  printf("{\"lines\":%lu,\"words\":%lu,\"bytes\":%lu}\n", lines, words, bytes);
  return 0;
}
