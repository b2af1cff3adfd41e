/* A classic System V message-queue program, as the notes write them:
 *   sysv_msg send PATH PROJ        msgsnd types 1, 2, 3 ("one", "two", "three")
 *   sysv_msg recv PATH PROJ COUNT  msgrcv(type 0) COUNT messages, print "TYPE TEXT"
 * The key comes from ftok(PATH, PROJ), like conduit::kernel::ftok. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct msgbuf_ { long mtype; char mtext[256]; };

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s send|recv PATH PROJ [COUNT]\n", argv[0]); return 2; }
    key_t key = ftok(argv[2], argv[3][0]);
    if (key == -1) { perror("ftok"); return 1; }
    int id = msgget(key, 0);
    if (id == -1) { perror("msgget"); return 1; }
    struct msgbuf_ m;
    if (strcmp(argv[1], "send") == 0) {
        const char *texts[] = { "one", "two", "three" };
        for (int i = 0; i < 3; i++) {
            m.mtype = i + 1;
            strcpy(m.mtext, texts[i]);
            if (msgsnd(id, &m, strlen(texts[i]), 0) == -1) { perror("msgsnd"); return 1; }
        }
        return 0;
    }
    int count = argc > 4 ? atoi(argv[4]) : 1;
    for (int i = 0; i < count; i++) {
        ssize_t n = msgrcv(id, &m, sizeof m.mtext - 1, 0, 0);
        if (n == -1) { perror("msgrcv"); return 1; }
        m.mtext[n] = 0;
        printf("%ld %s\n", m.mtype, m.mtext);
    }
    return 0;
}
