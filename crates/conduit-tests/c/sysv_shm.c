/* A classic System V shared-memory program:
 *   sysv_shm write PATH PROJ TEXT   shmat the segment of ftok(PATH, PROJ), copy TEXT to its start
 *   sysv_shm read PATH PROJ LEN     print its first LEN bytes */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s write|read PATH PROJ TEXT|LEN\n", argv[0]); return 2; }
    key_t key = ftok(argv[2], argv[3][0]);
    if (key == -1) { perror("ftok"); return 1; }
    int id = shmget(key, 0, 0);
    if (id == -1) { perror("shmget"); return 1; }
    char *p = shmat(id, NULL, 0);
    if (p == (char *)-1) { perror("shmat"); return 1; }
    if (strcmp(argv[1], "write") == 0) {
        memcpy(p, argv[4], strlen(argv[4]));
    } else {
        fwrite(p, 1, (size_t)atoi(argv[4]), stdout);
    }
    shmdt(p);
    return 0;
}
