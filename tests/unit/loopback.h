/*
 * loopback.h -- a scripted HTTP/1.1 server for client tests: one thread,
 * a listening socket on 127.0.0.1 (port 0, so tests never collide), any
 * number of connections served with poll(). Every request head read on a
 * connection goes to the test's handler, which writes the answer itself
 * (t_lb_send) and says what happens to the connection next. Requests have
 * no bodies (the clients under test only send GET).
 */
#ifndef PD_TEST_LOOPBACK_H
#define PD_TEST_LOOPBACK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

enum {
    T_LB_KEEP,  /* read the next request on this connection */
    T_LB_CLOSE, /* close it now */
    T_LB_HOLD,  /* keep it open and unanswered until the client or the server closes */
};

/* req: the request head (NUL-terminated, without the blank line); k: its
 * index on this connection; n: its index over the server's life. */
typedef int (*t_lb_handler)(void *arg, int fd, const char *req, int k, int n);

typedef struct {
    int lfd, port;
    pthread_t th;
    t_lb_handler fn;
    void *arg;
    _Atomic int stop;
    _Atomic int accepts;   /* connections accepted */
    _Atomic int requests;  /* request heads read */
    pthread_mutex_t mu;
    char last[8192];       /* the last request head (t_lb_last) */
} t_lb;

/* Starts the server; 0 or -1. */
int t_lb_start(t_lb *s, t_lb_handler fn, void *arg);
/* Stops the thread, closes every connection and the listener. */
void t_lb_stop(t_lb *s);
/* Copies the last request head into out. */
void t_lb_last(t_lb *s, char *out, size_t cap);
/* Writes all of data to fd (waiting at most 5 s at a time for room). */
void t_lb_send(int fd, const void *data, size_t n);
/* t_lb_send of a C string. */
void t_lb_sends(int fd, const char *s);

#endif
