/*
 * ctl_broker.c -- `profilectl broker`: an embedded Kafka cluster for tests,
 * demos and benchmarks, built on librdkafka's mock cluster.
 *
 * Sequence: block SIGINT/SIGTERM (before any librdkafka thread exists, so
 * every thread inherits the mask and only sigtimedwait sees them) -> create
 * a producer handle -> rd_kafka_mock_cluster_new -> create each topic T with
 * its internal topics T<dlq-suffix> (same partition count) and
 * T<members-suffix> (1 partition), each name once: a listed topic that is
 * another listed topic's internal topic is created as that (topic_plan)
 * -> print the bootstrap list as the first
 * stdout line (and write --bootstrap-file atomically) -> wait for a signal
 * in 1 s steps -> destroy cluster, then handle -> restore the signal mask.
 * SIGUSR1 takes every mock broker down (connections refused: Kafka lost),
 * SIGUSR2 brings them up again (fault tests, `make chaos`); SIGSTOP and
 * SIGCONT pause the whole cluster.
 *
 * The mock cluster lives inside this process and listens on 127.0.0.1
 * ephemeral ports; it goes away when the process exits.
 */
#include "ctl.h"
#include "config.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* librdkafka 2.0.2's mock group coordinator uses the group leader's first
 * assignment strategy and asserts that every member lists the same one
 * first (rd_kafka_mock_cgrp_elect_leader): a consumer with range or
 * roundrobin (kcat -G's default) joining a group of profiled workers
 * (cooperative-sticky) aborts the whole mock. It cannot be configured
 * away; say so, then die as before (docs/operations.md). */
static void on_mock_abort(int sig)
{
    static const char msg[] =
        "profilectl broker: librdkafka's mock cluster aborted. Known cause: a group member whose first "
        "partition.assignment.strategy differs from the group leader's (e.g. kcat -G, range, joining "
        "profiled's cooperative-sticky group); give such a consumer "
        "-X partition.assignment.strategy=cooperative-sticky or its own group\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef struct {
    int64_t partitions;
    int64_t brokers;
    char *topics;          /* comma list */
    char *bootstrap_file;  /* "" = none */
    char *dlq_suffix;
    char *members_suffix;
} broker_opts;

#define BOFF(f) offsetof(broker_opts, f)
static const pd_opt broker_tbl[] = {
    {"partitions", PD_OPT_INT, BOFF(partitions), "12", 1, 10000, "Partitions of each topic (and of its DLQ)."},
    {"brokers", PD_OPT_INT, BOFF(brokers), "3", 1, 32, "Number of mock brokers."},
    {"topics", PD_OPT_STR, BOFF(topics), "events", 1, 0, "Comma-separated topics to create."},
    {"bootstrap_file", PD_OPT_STR, BOFF(bootstrap_file), "", 1, 0, "Also write the bootstrap list to this file (atomically)."},
    {"dlq_suffix", PD_OPT_STR, BOFF(dlq_suffix), ".dlq", 1, 0, "Suffix of each topic's dead-letter topic."},
    {"members_suffix", PD_OPT_STR, BOFF(members_suffix), ".members", 1, 0, "Suffix of each topic's membership topic (1 partition)."},
};
#define BROKER_TBL_LEN PD_ARRAY_LEN(broker_tbl)

static void broker_usage(FILE *out)
{
    fprintf(out, "usage: profilectl broker [options]\n"
                 "Runs an in-process Kafka mock cluster on 127.0.0.1 until SIGINT/SIGTERM.\n"
                 "SIGUSR1 takes every broker down, SIGUSR2 brings them up again (fault tests).\n"
                 "The first stdout line is the bootstrap server list.\n\n");
    pd_opts_usage(broker_tbl, BROKER_TBL_LEN, out);
}

/* Parses the flags (config.h machinery). */
static int broker_parse(broker_opts *o, int argc, char **argv, int *help, char *err, size_t errlen)
{
    pd_argv_extra ex = {0};
    return pd_opts_parse_argv(broker_tbl, BROKER_TBL_LEN, o, argc, argv, &ex, help, err, errlen);
}

/* Writes `text` + "\n" to path via path.tmp.<pid> + rename. */
static int write_atomic(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[4096];
    int rc = PD_OK;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return pd_seterr(err, errlen, PD_EINVAL, "bootstrap_file: path too long");
    FILE *f = fopen(tmp, "w");
    if (!f) return pd_seterr(err, errlen, PD_EIO, "bootstrap_file: %s: %s", tmp, strerror(errno));
    if (fprintf(f, "%s\n", text) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "bootstrap_file: write %s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        goto out;
    }
    if (fclose(f) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "bootstrap_file: close %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "bootstrap_file: rename to %s: %s", path, strerror(errno));
        unlink(tmp);
    }
out:
    return rc;
}

/* Creates topic `name` with nparts partitions; logs on failure. */
static int create_topic(rd_kafka_mock_cluster_t *mc, const char *name, int nparts, int rf,
                        char *err, size_t errlen)
{
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, nparts, rf);
    if (e) return pd_seterr(err, errlen, PD_ERR, "create topic %s: %s", name, rd_kafka_err2str(e));
    pd_info("broker: topic %s partitions=%d replication=%d", name, nparts, rf);
    return PD_OK;
}

/* One topic to create. */
typedef struct {
    char *name;  /* owned */
    int nparts;
} broker_topic;

static int plan_has(const broker_topic *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return 1;
    return 0;
}

static void plan_add(broker_topic **t, size_t *n, const char *a, const char *b, int nparts)
{
    pd_buf name = {0};
    pd_buf_printf(&name, "%s%s", a, b);
    if (plan_has(*t, *n, name.p)) {
        pd_buf_free(&name);
        return;
    }
    *t = pd_realloc(*t, (*n + 1) * sizeof **t);
    (*t)[(*n)++] = (broker_topic){name.p, nparts};
}

/* The topics to create for the comma list `topics` (names trimmed of
 * spaces, empty ones skipped): each listed T, then T<dlq> (nparts
 * partitions) and T<members> (1 partition), each name once. A listed name
 * that is the DLQ or membership topic of another listed topic is created
 * once, as that topic's internal topic (so `--topics events,events.dlq`
 * is the same as `--topics events`). *out gets an owned array (free with
 * topic_plan_free); returns its length. */
static size_t topic_plan(const char *topics, const char *dlq, const char *members, int nparts,
                         broker_topic **out)
{
    char *list = pd_strdup(topics), *save = NULL;
    char **names = NULL;
    size_t nn = 0, n = 0;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        size_t tl = strlen(t);
        while (tl && t[tl - 1] == ' ') t[--tl] = '\0';
        if (!tl) continue;
        names = pd_realloc(names, (nn + 1) * sizeof *names);
        names[nn++] = t;
    }
    broker_topic *plan = NULL;
    for (size_t i = 0; i < nn; i++) {
        int internal = 0;
        for (size_t j = 0; j < nn && !internal; j++) {
            size_t lj = strlen(names[j]);
            if (j == i || strncmp(names[i], names[j], lj) != 0) continue;
            internal = strcmp(names[i] + lj, dlq) == 0 || strcmp(names[i] + lj, members) == 0;
        }
        if (internal) continue;
        plan_add(&plan, &n, names[i], "", nparts);
        plan_add(&plan, &n, names[i], dlq, nparts);
        plan_add(&plan, &n, names[i], members, 1);
    }
    free(names);
    free(list);
    *out = plan;
    return n;
}

static void topic_plan_free(broker_topic *t, size_t n)
{
    for (size_t i = 0; i < n; i++) free(t[i].name);
    free(t);
}

int ctl_broker_main(int argc, char **argv)
{
    broker_opts o;
    char err[512];
    int help = 0, exit_code = 1;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    sigset_t sigs, oldmask;
    int mask_set = 0;

    memset(&o, 0, sizeof o);
    pd_opts_defaults(broker_tbl, BROKER_TBL_LEN, &o);
    if (broker_parse(&o, argc, argv, &help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl broker: %s\n", err);
        broker_usage(stderr);
        exit_code = 2;
        goto out;
    }
    if (help) {
        broker_usage(stdout);
        exit_code = 0;
        goto out;
    }
    if (!*o.topics) {
        fprintf(stderr, "profilectl broker: topics: must not be empty\n");
        exit_code = 2;
        goto out;
    }

    /* An abort inside the mock says why it most likely happened. */
    signal(SIGABRT, on_mock_abort);
    /* Block the stop signals before librdkafka starts its threads. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &sigs, &oldmask) != 0) {
        pd_error("broker: pthread_sigmask failed");
        goto out;
    }
    mask_set = 1;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Nothing is produced through this handle; it only hosts the cluster.
     * log_level 4 hides the "no bootstrap.servers" notice; warnings stay. */
    if (rd_kafka_conf_set(conf, "log_level", "4", err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        pd_error("broker: %s", err);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err); /* takes conf on success */
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        pd_error("broker: rd_kafka_new: %s", err);
        goto out;
    }
    mc = rd_kafka_mock_cluster_new(rk, (int)o.brokers);
    if (!mc) {
        pd_error("broker: rd_kafka_mock_cluster_new failed");
        goto out;
    }
    int rf = (int)PD_MIN(3, o.brokers);

    /* topics: each listed T with T<dlq> and T<members> */
    {
        broker_topic *plan = NULL;
        size_t n = topic_plan(o.topics, o.dlq_suffix, o.members_suffix, (int)o.partitions, &plan);
        int rc = PD_OK;
        for (size_t i = 0; i < n && rc == PD_OK; i++) rc = create_topic(mc, plan[i].name, plan[i].nparts, rf, err, sizeof err);
        topic_plan_free(plan, n);
        if (rc != PD_OK) {
            pd_error("broker: %s", err);
            goto out;
        }
    }

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstraps);
    fflush(stdout);
    if (*o.bootstrap_file && write_atomic(o.bootstrap_file, bootstraps, err, sizeof err) != PD_OK) {
        pd_error("broker: %s", err);
        goto out;
    }
    pd_info("broker: %d brokers at %s; stop with SIGTERM or SIGINT", (int)o.brokers, bootstraps);
    pd_info("broker: mock limits: retention ~5 MiB or 100k batches per partition (oldest "
            "segments dropped), no log compaction, transactions not enforced, "
            "group rebalances wait up to session.timeout.ms");

    /* Wait for a stop signal; each wait is bounded to 1 s. */
    for (;;) {
        struct timespec ts = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            pd_info("broker: %s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
        if (sig == SIGUSR1 || sig == SIGUSR2) { /* every broker down / up again (fault tests) */
            for (int32_t id = 1; id <= (int32_t)o.brokers; id++) {
                if (sig == SIGUSR1) rd_kafka_mock_broker_set_down(mc, id);
                else rd_kafka_mock_broker_set_up(mc, id);
            }
            pd_info("broker: every broker %s (%s)", sig == SIGUSR1 ? "down" : "up again",
                    sig == SIGUSR1 ? "SIGUSR1" : "SIGUSR2");
        }
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            pd_error("broker: sigtimedwait: %s", strerror(errno));
            goto out;
        }
    }
    exit_code = 0;

out:
    if (mc) rd_kafka_mock_cluster_destroy(mc);
    if (rk) rd_kafka_destroy(rk);
    if (mask_set) pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
    pd_opts_free(broker_tbl, BROKER_TBL_LEN, &o);
    return exit_code;
}
