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
