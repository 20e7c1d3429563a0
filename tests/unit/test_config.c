/* test_config.c -- the settings table: defaults, bounds, unknown keys,
 * config file + flag precedence, kafka.* passthrough, durations. */
#include "test.h"
#include "config.h"
#include "util.h"

#include <stdlib.h>

TEST(config_defaults)
{
    pd_config c;
    pd_config_init(&c);
    CHECK_INT(c.retention_days, 60);
    CHECK_INT(c.commit_interval_ms, 100);
    CHECK_INT(c.categorical_max_values, 64);
    CHECK_INT(c.dedup_window_ms, 24LL * 3600 * 1000);
    CHECK_INT(c.max_future_skew_ms, 3600 * 1000);
    CHECK_STR(c.topic, "events");
    pd_config_free(&c);
}

TEST(config_rejects_unknown_and_out_of_range)
{
    pd_config c;
    char err[256];
    pd_config_init(&c);
    CHECK_INT(pd_config_set(&c, "retention_dayz", "5", err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "retention_dayz") != NULL);
    CHECK(pd_config_set(&c, "retention_days", "0", err, sizeof err) < 0);
    CHECK(strstr(err, "retention_days") != NULL);
    CHECK(pd_config_set(&c, "retention_days", "12x", err, sizeof err) < 0);
    CHECK(pd_config_set(&c, "quiet", "maybe", err, sizeof err) < 0);
    CHECK(pd_config_set(&c, "dedup_window", "3 weeks", err, sizeof err) < 0);
    CHECK_INT(pd_config_set(&c, "dedup_window", "90m", err, sizeof err), PD_OK);
    CHECK_INT(c.dedup_window_ms, 90LL * 60000);
    CHECK_INT(pd_config_set(&c, "retention-days", "7", err, sizeof err), PD_OK); /* dashes ok */
    CHECK_INT(c.retention_days, 7);
    pd_config_free(&c);
}

TEST(config_file_then_flags)
{
    const char *dir = pd_test_tmpdir();
    char path[400];
    snprintf(path, sizeof path, "%s/p.conf", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# comment\nretention_days = 30\ntopic = \"clicks\"\nkafka.fetch.wait.max.ms = 50\n\n");
    fclose(f);
    pd_config c;
    char err[256];
    int help;
    pd_config_init(&c);
    char *argv[] = {"profiled", "--config", path, "--retention_days", "10", "--group=g2", NULL};
    CHECK_INT(pd_config_parse_args(&c, 6, argv, &help, err, sizeof err), PD_OK);
    CHECK_INT(c.retention_days, 10); /* flag wins */
    CHECK_STR(c.topic, "clicks");
    CHECK_STR(c.group, "g2");
    CHECK_INT(c.kafka.n, 1);
    CHECK_STR(c.kafka.keys[0], "fetch.wait.max.ms");
    CHECK_INT(pd_config_finalize(&c, err, sizeof err), PD_OK);
    CHECK_STR(c.dlq_topic, "clicks.dlq");
    CHECK_STR(c.members_topic, "clicks.members");
    pd_config_free(&c);

    f = fopen(path, "w");
    fprintf(f, "retention_days = 30\nbogus_key = 1\n");
    fclose(f);
    pd_config_init(&c);
    CHECK(pd_config_load_file(&c, path, err, sizeof err) < 0);
    CHECK(strstr(err, ":2:") != NULL && strstr(err, "bogus_key") != NULL);
    pd_config_free(&c);
}

TEST(config_durations)
{
    int64_t ms;
    CHECK(pd_parse_duration("250", &ms) == 0 && ms == 250);
    CHECK(pd_parse_duration("1.5s", &ms) == 0 && ms == 1500);
    CHECK(pd_parse_duration("7d", &ms) == 0 && ms == 7LL * 86400000);
    CHECK(pd_parse_duration("-1s", &ms) < 0);
    CHECK(pd_parse_duration("s", &ms) < 0);
}

/* Writes `text` to <tmpdir>/<name>; returns the path (static buffer per name slot). */
static const char *tok_file(char *path, size_t cap, const char *name, const char *text)
{
    snprintf(path, cap, "%s/%s", pd_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Runs parse + finalize on argv (NULL-terminated); returns finalize's code. */
static int tok_config(pd_config *c, char **argv, char *err, size_t errlen)
{
    int argc = 0, help;
    while (argv[argc]) argc++;
    pd_config_init(c);
    int rc = pd_config_parse_args(c, argc, argv, &help, err, errlen);
    return rc ? rc : pd_config_finalize(c, err, errlen);
}

TEST(config_token_file_and_env_precedence)
{
    char fa[400], fc[400], err[512];
    tok_file(fa, sizeof fa, "api", "from-file\n");
    tok_file(fc, sizeof fc, "clu", "clu-file\r\n");
    unsetenv("PROFILED_API_TOKEN");
    unsetenv("PROFILED_CLUSTER_TOKEN");
    pd_config c;

    /* file: content less the trailing newline (and CR) */
    char *a1[] = {"profiled", "--api_token_file", fa, "--cluster_token_file", fc, NULL};
    CHECK_INT(tok_config(&c, a1, err, sizeof err), PD_OK);
    CHECK_STR(c.api_token, "from-file");
    CHECK_STR(c.cluster_token, "clu-file");
    pd_config_free(&c);

    /* the environment is the fallback: a file or the setting wins */
    setenv("PROFILED_API_TOKEN", "from-env", 1);
    setenv("PROFILED_CLUSTER_TOKEN", "clu-env", 1);
    char *a2[] = {"profiled", NULL};
    CHECK_INT(tok_config(&c, a2, err, sizeof err), PD_OK);
    CHECK_STR(c.api_token, "from-env");
    CHECK_STR(c.cluster_token, "clu-env");
    pd_config_free(&c);
    CHECK_INT(tok_config(&c, a1, err, sizeof err), PD_OK);
    CHECK_STR(c.api_token, "from-file");
    CHECK_STR(c.cluster_token, "clu-file");
    pd_config_free(&c);
    char *a3[] = {"profiled", "--api_token", "from-flag", NULL};
    CHECK_INT(tok_config(&c, a3, err, sizeof err), PD_OK);
    CHECK_STR(c.api_token, "from-flag");
    CHECK_STR(c.cluster_token, "clu-env");
    pd_config_free(&c);
    unsetenv("PROFILED_API_TOKEN");
    unsetenv("PROFILED_CLUSTER_TOKEN");

    /* both the setting and its file: an error naming both */
    char *a4[] = {"profiled", "--api_token", "x", "--api_token_file", fa, NULL};
    CHECK(tok_config(&c, a4, err, sizeof err) < 0);
    CHECK(strstr(err, "api_token") && strstr(err, "api_token_file"));
    pd_config_free(&c);
    /* unreadable or empty file: an error naming the key */
    char missing[400];
    snprintf(missing, sizeof missing, "%s/none", pd_test_tmpdir());
    char *a5[] = {"profiled", "--cluster_token_file", missing, NULL};
    CHECK(tok_config(&c, a5, err, sizeof err) < 0);
    CHECK(strstr(err, "cluster_token_file") != NULL);
    pd_config_free(&c);
    char fe[400];
    tok_file(fe, sizeof fe, "empty", "\n");
    char *a6[] = {"profiled", "--api_token_file", fe, NULL};
    CHECK(tok_config(&c, a6, err, sizeof err) < 0);
    CHECK(strstr(err, "api_token_file") && strstr(err, "empty"));
    pd_config_free(&c);
}

TEST(config_cluster_token_fallback)
{
    pd_config c;
    pd_config_init(&c);
    CHECK(pd_config_cluster_token(&c) == NULL);
    pd_config_set(&c, "api_token", "api", NULL, 0);
    CHECK_STR(pd_config_cluster_token(&c), "api");
    pd_config_set(&c, "cluster_token", "clu", NULL, 0);
    CHECK_STR(pd_config_cluster_token(&c), "clu");
    pd_config_free(&c);
}

TEST(config_no_secret_no_cluster)
{
    unsetenv("PROFILED_API_TOKEN");
    unsetenv("PROFILED_CLUSTER_TOKEN");
    CHECK(pd_listen_is_loopback("127.0.0.1:0"));
    CHECK(pd_listen_is_loopback("localhost:8080"));
    CHECK(pd_listen_is_loopback("[::1]:8080"));
    CHECK(pd_listen_is_loopback("127.0.0.1:1,127.0.0.2:2"));
    CHECK(!pd_listen_is_loopback("0.0.0.0:8080"));
    CHECK(!pd_listen_is_loopback(":8080"));
    CHECK(!pd_listen_is_loopback("10.0.0.5:8080"));
    CHECK(!pd_listen_is_loopback("127.0.0.1:1,0.0.0.0:2"));
    CHECK(!pd_listen_is_loopback("127.example.com:1"));
    pd_config c;
    char err[512];
    char *open_[] = {"profiled", "--listen", "0.0.0.0:8080", NULL};
    CHECK(tok_config(&c, open_, err, sizeof err) < 0);
    CHECK(strstr(err, "insecure_cluster") && strstr(err, "listen"));
    pd_config_free(&c);
    char *optin[] = {"profiled", "--listen", "0.0.0.0:8080", "--insecure_cluster", "true", NULL};
    CHECK_INT(tok_config(&c, optin, err, sizeof err), PD_OK);
    pd_config_free(&c);
    char *tok[] = {"profiled", "--listen", "0.0.0.0:8080", "--api_token", "t", NULL};
    CHECK_INT(tok_config(&c, tok, err, sizeof err), PD_OK);
    pd_config_free(&c);
    char *lo[] = {"profiled", "--listen", "127.0.0.1:0", NULL};
    CHECK_INT(tok_config(&c, lo, err, sizeof err), PD_OK);
    pd_config_free(&c);
}
