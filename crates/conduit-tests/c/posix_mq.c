/* A classic POSIX message-queue program:
 *   posix_mq send NAME         mq_send "low" (priority 1), "high" (9), "mid" (5)
 *   posix_mq recv NAME COUNT   mq_receive COUNT messages, print "PRIORITY TEXT" */
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s send|recv NAME [COUNT]\n", argv[0]); return 2; }
    mqd_t q = mq_open(argv[2], O_RDWR);
    if (q == (mqd_t)-1) { perror("mq_open"); return 1; }
    if (strcmp(argv[1], "send") == 0) {
        const char *texts[] = { "low", "high", "mid" };
        unsigned prios[] = { 1, 9, 5 };
        for (int i = 0; i < 3; i++)
            if (mq_send(q, texts[i], strlen(texts[i]), prios[i]) == -1) { perror("mq_send"); return 1; }
    } else {
        struct mq_attr a;
        mq_getattr(q, &a);
        char *buf = malloc(a.mq_msgsize + 1);
        int count = argc > 3 ? atoi(argv[3]) : 1;
        for (int i = 0; i < count; i++) {
            unsigned prio;
            ssize_t n = mq_receive(q, buf, a.mq_msgsize, &prio);
            if (n == -1) { perror("mq_receive"); return 1; }
            buf[n] = 0;
            printf("%u %s\n", prio, buf);
        }
    }
    mq_close(q);
    return 0;
}
