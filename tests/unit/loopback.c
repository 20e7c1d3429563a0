/* loopback.c -- see loopback.h. */
#include "loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LB_MAX_CONN 32
#define LB_BUF 8192

typedef struct {
    int fd;
    int k;        /* requests read on it */
    int hold;
    size_t len;
    char buf[LB_BUF];
} lb_conn;

void t_lb_send(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 5000) == 1) continue;
            return;
        }
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

void t_lb_sends(int fd, const char *s)
{
    t_lb_send(fd, s, strlen(s));
}

/* Serves what c->buf holds; returns 0, or -1 when c must be closed. */
static int lb_serve(t_lb *s, lb_conn *c)
{
    char *eoh;
    while (!c->hold && (eoh = memmem(c->buf, c->len, "\r\n\r\n", 4)) != NULL) {
        size_t hl = (size_t)(eoh - c->buf);
        char head[LB_BUF];
        memcpy(head, c->buf, hl);
        head[hl] = '\0';
        memmove(c->buf, eoh + 4, c->len - hl - 4);
        c->len -= hl + 4;
        pthread_mutex_lock(&s->mu);
        snprintf(s->last, sizeof s->last, "%s", head);
        pthread_mutex_unlock(&s->mu);
        int n = atomic_fetch_add(&s->requests, 1);
        int what = s->fn(s->arg, c->fd, head, c->k++, n);
        if (what == T_LB_CLOSE) return -1;
        if (what == T_LB_HOLD) c->hold = 1;
    }
    return 0;
}

static void *lb_main(void *arg)
{
    t_lb *s = arg;
    lb_conn *conns = calloc(LB_MAX_CONN, sizeof *conns);
    int n = 0;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd[LB_MAX_CONN + 1];
        pfd[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        for (int i = 0; i < n; i++) pfd[i + 1] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
        if (poll(pfd, (nfds_t)n + 1, 20) <= 0) continue;
        for (int i = n - 1; i >= 0; i--) {
            if (!pfd[i + 1].revents) continue;
            lb_conn *c = &conns[i];
            int dead;
            if (c->len >= LB_BUF) c->len = 0; /* oversized head: drop it */
            ssize_t r = recv(c->fd, c->buf + c->len, LB_BUF - c->len, 0);
            if (r > 0 && c->hold) r = 1; /* held: ignore what arrives */
            if (r > 0 && !c->hold) c->len += (size_t)r;
            dead = r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN) || lb_serve(s, c) < 0;
            if (dead) {
                close(c->fd);
                conns[i] = conns[--n];
            }
        }
        if ((pfd[0].revents & POLLIN) && n < LB_MAX_CONN) {
            /* non-blocking: nothing in the process can hang on it */
            int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                memset(&conns[n], 0, sizeof conns[n]);
                conns[n++].fd = fd;
                atomic_fetch_add(&s->accepts, 1);
            }
        }
    }
    for (int i = 0; i < n; i++) close(conns[i].fd);
    free(conns);
    return NULL;
}

int t_lb_start(t_lb *s, t_lb_handler fn, void *arg)
{
    memset(s, 0, sizeof *s);
    s->fn = fn;
    s->arg = arg;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 64) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0) {
        if (s->lfd >= 0) close(s->lfd);
        return -1;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->th, NULL, lb_main, s) != 0) {
        close(s->lfd);
        return -1;
    }
    return 0;
}

void t_lb_stop(t_lb *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
}

void t_lb_last(t_lb *s, char *out, size_t cap)
{
    pthread_mutex_lock(&s->mu);
    snprintf(out, cap, "%s", s->last);
    pthread_mutex_unlock(&s->mu);
}
