/* The notes' POSIX shared-memory producer (shm_open, ftruncate, mmap,
 * sprintf): writes "Hello" then "World!" into the object NAME. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const int SIZE = 4096;
    const char *name = argc > 1 ? argv[1] : "/OS";
    const char *message_0 = "Hello";
    const char *message_1 = "World!";
    int shm_fd = shm_open(name, O_CREAT | O_RDWR, 0666);
    if (shm_fd == -1) { perror("shm_open"); return 1; }
    if (ftruncate(shm_fd, SIZE) == -1) { perror("ftruncate"); return 1; }
    char *ptr = mmap(0, SIZE, PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (ptr == MAP_FAILED) { perror("mmap"); return 1; }
    sprintf(ptr, "%s", message_0);
    ptr += strlen(message_0);
    sprintf(ptr, "%s", message_1);
    ptr += strlen(message_1);
    return 0;
}
