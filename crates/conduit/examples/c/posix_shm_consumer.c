/* The notes' POSIX shared-memory consumer: maps the object NAME read-only,
 * prints what the producer wrote, and removes the object (shm_unlink). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const int SIZE = 4096;
    const char *name = argc > 1 ? argv[1] : "/OS";
    int shm_fd = shm_open(name, O_RDONLY, 0666);
    if (shm_fd == -1) { perror("shm_open"); return 1; }
    char *ptr = mmap(0, SIZE, PROT_READ, MAP_SHARED, shm_fd, 0);
    if (ptr == MAP_FAILED) { perror("mmap"); return 1; }
    printf("%.*s\n", SIZE, ptr);
    shm_unlink(name);
    return 0;
}
