/* tstamp: run a command and timestamp its output, for benchmarks in the
 * rig (busybox's date has no sub-second clock).
 *
 *   tstamp CMD [ARGS...]
 *
 * Prints "@@PID <pid>" once the command is started, then each line the
 * command writes to stdout/stderr as "<ms> <line>" (ms since just before
 * the fork, CLOCK_MONOTONIC, 3 decimals, '\r' dropped), and finally
 * "@@EXIT <status>" (exit code, or 128+signal). Built static on the host
 * and shipped into L1 as a payload by scripts/bench/boot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static double ms_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tstamp CMD [ARGS...]\n");
    return 2;
  }
  int fds[2];
  if (pipe(fds) != 0) { perror("tstamp: pipe"); return 2; }
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) { perror("tstamp: fork"); return 2; }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execvp(argv[1], argv + 1);
    perror("tstamp: exec");
    _exit(127);
  }
  close(fds[1]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("@@PID %d\n", (int)pid);

  FILE *in = fdopen(fds[0], "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, in)) > 0) {
    double ms = ms_since(&t0);
    char *w = line;
    for (char *r = line; r < line + n; r++)
      if (*r != '\r' && *r != '\n') *w++ = *r;
    *w = 0;
    printf("%.3f %s\n", ms, line);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  printf("@@EXIT %d\n", code);
  return 0;
}
