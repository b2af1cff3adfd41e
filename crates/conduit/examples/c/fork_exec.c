/* The notes' fork/exec/wait: the child replaces itself with PROGRAM
 * (execlp), the parent waits for it and reports its pid and status. */
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s PROGRAM ARG\n", argv[0]); return 2; }
    pid_t pid = fork();
    if (pid < 0) { fprintf(stderr, "Fork Failed"); return 1; }
    if (pid == 0) {
        execlp(argv[1], argv[1], argv[2], NULL);
        perror("execlp");
        return 127;
    }
    int status;
    pid_t done = wait(&status);
    fflush(stdout);
    printf("child %d complete, status %d\n", (int)done, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
