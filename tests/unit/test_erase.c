/* Unit tests: erasure records (erase.h): the check of a control record. */
#include "test.h"
#include "erase.h"
#include "event.h"
#include "util.h"

#include <string.h>

static int chk(const char *kind, const char *key, const char *val, int32_t p, char *user, size_t *ulen)
{
    char err[256];
    return pd_erase_parse(kind, strlen(kind), key, key ? strlen(key) : 0, val, strlen(val), p, 4, user, ulen, err,
                          sizeof err);
}

TEST(erase_parse_record)
{
    char user[PD_MAX_USER_ID];
    size_t ul = 0;
    const int32_t p = pd_partition_for("alice", 5, 4);
    CHECK_INT(chk("erase", "alice", "{\"user_id\":\"alice\",\"requested_at\":\"2026-01-01T00:00:00Z\"}", p, user, &ul),
              PD_EV_OK);
    CHECK_INT((int)ul, 5);
    CHECK(memcmp(user, "alice", 5) == 0);
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"alice\"}", p, user, &ul), PD_EV_OK); /* no key */
    CHECK_INT(chk("erase", "bob", "{\"user_id\":\"alice\"}", p, user, &ul), PD_EV_BAD_ERASURE); /* key differs */
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"alice\"}", (p + 1) % 4, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "{\"user\":\"alice\"}", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "{\"user_id\":7}", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"\"}", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "[\"alice\"]", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "not json", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "", p, user, &ul), PD_EV_BAD_ERASURE);
    /* the event dialect (docs/data-model.md "Event JSON"), not a laxer one */
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"alice\"} junk", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"alice\",}", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"\\ud800\"}", p, user, &ul), PD_EV_BAD_ERASURE);
    CHECK_INT(chk("erase", NULL, "{\"user_id\":\"alice\",\"user_id\":\"bob\"}", p, user, &ul), PD_EV_OK);
    CHECK(ul == 5 && memcmp(user, "alice", 5) == 0); /* the first of duplicate keys, as for events */
    {   /* an escaped NUL is part of the id: "alice\u0000x" never erases alice */
        const char id[] = "alice\0x";
        const int32_t q = pd_partition_for(id, 7, 4);
        CHECK_INT(chk("erase", NULL, "{\"user_id\":\"alice\\u0000x\"}", q, user, &ul), PD_EV_OK);
        CHECK(ul == 7 && memcmp(user, id, 7) == 0);
    }
    CHECK_INT(chk("delete", NULL, "{\"user_id\":\"alice\"}", p, user, &ul), PD_EV_BAD_CONTROL);
    CHECK_INT(chk("", NULL, "{\"user_id\":\"alice\"}", p, user, &ul), PD_EV_BAD_CONTROL);
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_ERASURE), "bad_erasure");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_CONTROL), "bad_control");
}

TEST(erase_value_round_trips)
{
    pd_buf v = {0};
    pd_erase_value(&v, "a\"b", 3, 1767225600000LL);
    char user[PD_MAX_USER_ID], err[256];
    size_t ul = 0;
    const int32_t p = pd_partition_for("a\"b", 3, 4);
    CHECK_INT(pd_erase_parse("erase", 5, "a\"b", 3, v.p, v.len, p, 4, user, &ul, err, sizeof err), PD_EV_OK);
    CHECK_INT((int)ul, 3);
    CHECK(strstr(v.p, "\"requested_at\":\"2026-01-01T00:00:00.000Z\"") != NULL);
    pd_buf_free(&v);
}
