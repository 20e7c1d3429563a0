/*
 * gen.c -- deterministic synthetic vehicle-marketplace events (see gen.h).
 *
 * Design:
 *  - One xoshiro256** stream (seeded via splitmix64 from opts.seed) drives
 *    the event sequence: user, type, item choice, timestamp jitter, dups,
 *    bad lines.
 *  - The catalogue is virtual: the attributes of ad number A are drawn from
 *    a private PRNG seeded with hash(seed, A), so "ad-A" is consistent
 *    across events without storing anything. Ad numbers are laid out as
 *    A = k * nmakes + make, so choosing a make first and then a slot k keeps
 *    the make of an ad fixed.
 *  - User rank r (1-based, Zipf) has a preferred make and a small personal
 *    set of ads (both hash(seed, r)), so profiles have visible preferences
 *    and repeat views.
 *  - JSON is written with small append helpers (no printf): all table
 *    strings are plain JSON-safe literals (UTF-8 region names included).
 *
 * Invariants: g->emitted <= opts.count; the dup ring only holds valid
 * events; output never contains a newline.
 */
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG ---- */

typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in [0, 1). */
static inline double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* Uniform in [0, n), n >= 1. */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Standard normal (Box-Muller, one value per call: keeps streams simple). */
static double rng_normal(rng_t *r)
{
    double u1 = 1.0 - rng_unit(r); /* (0, 1] */
    double u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint64_t mix2(uint64_t a, uint64_t b)
{
    uint64_t x = a ^ (b * 0xd1342543de82ef95ULL);
    return splitmix64(&x);
}

/* Weighted choice from a small table of integer weights. */
static int pick_w(rng_t *r, const uint16_t *w, int n)
{
    uint32_t total = 0;
    for (int i = 0; i < n; i++) total += w[i];
    uint32_t x = (uint32_t)rng_below(r, total);
    for (int i = 0; i < n; i++) {
        if (x < w[i]) return i;
        x -= w[i];
    }
    return n - 1;
}

/* ---- catalogue ---- */

enum { B_SMALL, B_HATCH, B_SEDAN, B_ESTATE, B_SUV, B_VAN, B_COUPE, B_CONV, B_PICKUP, B__N };
static const char *const body_names[B__N] = {
    "small_car", "hatchback", "sedan", "estate", "suv", "van", "coupe", "convertible", "pickup",
};

typedef struct {
    const char *name;
    uint8_t body;
    uint32_t new_price; /* EUR, base variant */
    uint16_t kw;        /* base variant */
    uint16_t cc;        /* 0 = electric only */
} model_t;

typedef struct {
    const char *name;
    uint16_t weight;  /* market share, relative */
    uint8_t premium;  /* more automatic gearboxes, slower depreciation */
    uint8_t nmodels;
    const model_t *models;
} make_t;

#define M(n, b, p, k, c) { n, b, p, k, c }
static const model_t m_vw[] = {
    M("Golf", B_HATCH, 30000, 110, 1498), M("Polo", B_SMALL, 21000, 70, 999),
    M("Passat", B_ESTATE, 40000, 110, 1968), M("Tiguan", B_SUV, 38000, 110, 1498),
    M("Touran", B_VAN, 34000, 110, 1498), M("ID.3", B_HATCH, 38000, 150, 0),
    M("T-Roc", B_SUV, 30000, 110, 1498),
};
static const model_t m_mb[] = {
    M("A-Klasse", B_HATCH, 36000, 120, 1332), M("C-Klasse", B_SEDAN, 48000, 150, 1999),
    M("E-Klasse", B_SEDAN, 62000, 160, 1999), M("GLC", B_SUV, 58000, 190, 1999),
    M("Sprinter", B_VAN, 45000, 105, 2143), M("EQA", B_SUV, 52000, 140, 0),
};
static const model_t m_bmw[] = {
    M("1er", B_HATCH, 33000, 100, 1499), M("3er", B_SEDAN, 45000, 135, 1998),
    M("5er", B_SEDAN, 58000, 180, 1998), M("X1", B_SUV, 42000, 115, 1499),
    M("X3", B_SUV, 55000, 140, 1995), M("i4", B_COUPE, 58000, 250, 0),
};
static const model_t m_audi[] = {
    M("A3", B_HATCH, 33000, 110, 1498), M("A4", B_ESTATE, 43000, 140, 1984),
    M("A6", B_ESTATE, 57000, 150, 1968), M("Q3", B_SUV, 40000, 110, 1498),
    M("Q5", B_SUV, 55000, 150, 1968), M("TT", B_COUPE, 45000, 145, 1984),
    M("e-tron", B_SUV, 72000, 230, 0),
};
static const model_t m_opel[] = {
    M("Corsa", B_SMALL, 19000, 74, 1199), M("Astra", B_HATCH, 25000, 96, 1199),
    M("Insignia", B_ESTATE, 36000, 125, 1598), M("Mokka", B_SUV, 26000, 96, 1199),
    M("Zafira", B_VAN, 30000, 100, 1598),
};
static const model_t m_ford[] = {
    M("Fiesta", B_SMALL, 18000, 74, 999), M("Focus", B_HATCH, 26000, 92, 999),
    M("Kuga", B_SUV, 34000, 110, 1499), M("Mustang", B_COUPE, 55000, 331, 4951),
    M("Transit", B_VAN, 40000, 96, 1995), M("Ranger", B_PICKUP, 42000, 125, 1996),
};
static const model_t m_skoda[] = {
    M("Fabia", B_SMALL, 18000, 70, 999), M("Octavia", B_ESTATE, 30000, 110, 1968),
    M("Superb", B_ESTATE, 40000, 140, 1968), M("Kodiaq", B_SUV, 40000, 140, 1968),
    M("Enyaq", B_SUV, 45000, 150, 0),
};
static const model_t m_seat[] = {
    M("Ibiza", B_SMALL, 18000, 70, 999), M("Leon", B_HATCH, 26000, 110, 1498),
    M("Ateca", B_SUV, 30000, 110, 1498), M("Tarraco", B_SUV, 38000, 140, 1984),
};
static const model_t m_renault[] = {
    M("Clio", B_SMALL, 18000, 67, 999), M("Megane", B_HATCH, 25000, 103, 1332),
    M("Captur", B_SUV, 24000, 103, 1332), M("Zoe", B_SMALL, 33000, 80, 0),
    M("Kangoo", B_VAN, 26000, 85, 1461),
};
static const model_t m_peugeot[] = {
    M("208", B_SMALL, 19000, 74, 1199), M("308", B_HATCH, 27000, 96, 1199),
    M("3008", B_SUV, 34000, 96, 1199), M("5008", B_SUV, 37000, 96, 1199),
};
static const model_t m_toyota[] = {
    M("Yaris", B_SMALL, 20000, 85, 1490), M("Corolla", B_HATCH, 28000, 90, 1798),
    M("RAV4", B_SUV, 38000, 160, 2487), M("C-HR", B_SUV, 30000, 90, 1798),
    M("Hilux", B_PICKUP, 40000, 110, 2393),
};
static const model_t m_hyundai[] = {
    M("i10", B_SMALL, 13000, 49, 998), M("i20", B_SMALL, 18000, 74, 998),
    M("i30", B_HATCH, 24000, 88, 1482), M("Tucson", B_SUV, 33000, 110, 1598),
    M("Kona", B_SUV, 28000, 88, 1598),
};
static const model_t m_kia[] = {
    M("Picanto", B_SMALL, 12000, 49, 998), M("Ceed", B_HATCH, 24000, 88, 1482),
    M("Sportage", B_SUV, 33000, 110, 1598), M("Niro", B_SUV, 31000, 104, 1580),
    M("EV6", B_SUV, 47000, 168, 0),
};
static const model_t m_fiat[] = {
    M("500", B_SMALL, 16000, 51, 999), M("Panda", B_SMALL, 13000, 51, 999),
    M("Tipo", B_HATCH, 20000, 74, 1368), M("Ducato", B_VAN, 38000, 103, 2287),
};
static const model_t m_porsche[] = {
    M("911", B_COUPE, 120000, 283, 2981), M("Cayenne", B_SUV, 90000, 250, 2995),
    M("Macan", B_SUV, 70000, 195, 1984), M("Taycan", B_SEDAN, 95000, 300, 0),
    M("Panamera", B_SEDAN, 105000, 243, 2894),
};
static const model_t m_tesla[] = {
    M("Model 3", B_SEDAN, 45000, 208, 0), M("Model Y", B_SUV, 50000, 220, 0),
    M("Model S", B_SEDAN, 90000, 500, 0),
};
static const model_t m_volvo[] = {
    M("XC40", B_SUV, 38000, 120, 1969), M("XC60", B_SUV, 52000, 145, 1969),
    M("V60", B_ESTATE, 45000, 145, 1969), M("V90", B_ESTATE, 55000, 173, 1969),
};
static const model_t m_mazda[] = {
    M("2", B_SMALL, 18000, 66, 1496), M("3", B_HATCH, 25000, 90, 1998),
    M("CX-5", B_SUV, 32000, 121, 2488), M("MX-5", B_CONV, 30000, 96, 1496),
};
static const model_t m_dacia[] = {
    M("Sandero", B_SMALL, 12000, 67, 999), M("Duster", B_SUV, 18000, 84, 1332),
    M("Logan", B_SEDAN, 11000, 67, 999), M("Spring", B_SMALL, 20000, 33, 0),
};
static const model_t m_mini[] = {
    M("Cooper", B_SMALL, 27000, 100, 1499), M("Countryman", B_SUV, 34000, 100, 1499),
    M("Cabrio", B_CONV, 31000, 100, 1499),
};
#undef M

#define MK(n, w, p, arr) { n, w, p, (uint8_t)PD_ARRAY_LEN(arr), arr }
static const make_t makes[] = {
    MK("Volkswagen", 200, 0, m_vw), MK("Mercedes-Benz", 110, 1, m_mb),
    MK("BMW", 100, 1, m_bmw), MK("Audi", 80, 1, m_audi),
    MK("Opel", 70, 0, m_opel), MK("Ford", 70, 0, m_ford),
    MK("Skoda", 60, 0, m_skoda), MK("Seat", 40, 0, m_seat),
    MK("Renault", 40, 0, m_renault), MK("Peugeot", 30, 0, m_peugeot),
    MK("Toyota", 40, 0, m_toyota), MK("Hyundai", 40, 0, m_hyundai),
    MK("Kia", 30, 0, m_kia), MK("Fiat", 30, 0, m_fiat),
    MK("Porsche", 10, 1, m_porsche), MK("Tesla", 12, 1, m_tesla),
    MK("Volvo", 20, 1, m_volvo), MK("Mazda", 20, 0, m_mazda),
    MK("Dacia", 20, 0, m_dacia), MK("Mini", 20, 1, m_mini),
};
#undef MK
#define NMAKES ((int)PD_ARRAY_LEN(makes))

static const char *const colors[] = {
    "black", "white", "grey", "silver", "blue", "red", "green",
    "brown", "beige", "yellow", "orange", "gold", "violet",
};
static const uint16_t color_w[] = { 220, 200, 180, 120, 100, 70, 20, 20, 20, 10, 10, 5, 5 };

enum { F_PETROL, F_DIESEL, F_HYBRID, F_LPG, F_CNG, F_ELECTRIC };
static const char *const fuels[] = { "petrol", "diesel", "hybrid", "lpg", "cng", "electric" };
static const uint16_t fuel_w_car[] = { 500, 330, 130, 25, 15 };
static const uint16_t fuel_w_van[] = { 140, 840, 10, 5, 5 };

static const char *const regions[] = {
    "Nordrhein-Westfalen", "Bayern", "Baden-W\xc3\xbcrttemberg", "Niedersachsen", "Hessen",
    "Rheinland-Pfalz", "Sachsen", "Berlin", "Schleswig-Holstein", "Brandenburg",
    "Sachsen-Anhalt", "Th\xc3\xbcringen", "Hamburg", "Mecklenburg-Vorpommern", "Saarland",
    "Bremen",
};
static const uint16_t region_w[] = { 180, 130, 110, 80, 60, 40, 40, 37, 29, 25, 22, 21, 19, 16, 10, 7 };

enum { C_USED, C_NEW, C_DEMO, C_EMPLOYEE };
static const char *const conditions[] = { "used", "new", "demonstration", "employee_car" };
static const uint16_t condition_w[] = { 850, 80, 40, 30 };

/* Engine variants: power factor (x100) and weights. */
static const uint16_t variant_pct[] = { 80, 100, 125, 160 };
static const uint16_t variant_w[] = { 25, 45, 22, 8 };

/* ---- event types ---- */

enum { T_VIEW, T_SEARCH, T_PARK, T_CONTACT };
static const char *const type_names[] = { "view", "search", "park", "contact" };
static const uint16_t type_w[] = { 70, 15, 10, 5 };

static const char *const bad_names[PD_GEN_BAD__COUNT] = {
    "invalid_json", "not_object", "missing_user_id", "bad_user_id_type", "empty_user_id",
    "missing_ts", "bad_ts_type", "bad_ts_format", "ts_out_of_range", "missing_type",
    "bad_attr_container",
};

const char *pd_gen_bad_name(int kind)
{
    if (kind < 0 || kind >= PD_GEN_BAD__COUNT) return "?";
    return bad_names[kind];
}

/* ---- generator state ---- */

#define DUP_RING 16
#define PERSONAL_ADS 20
#define DAY_MS 86400000LL
#define JITTER_MS 90000LL

struct pd_gen {
    pd_gen_opts o;
    rng_t rng;
    double *cdf;          /* users entries, cdf[users-1] == 1 */
    int64_t emitted;      /* lines produced so far */
    int64_t span_ms;      /* days * DAY_MS */
    int ref_year;         /* calendar year of the end of the span */
    uint64_t ads_per_make;
    int last_bad;
    pd_buf ring_json[DUP_RING], ring_key[DUP_RING];
    int ring_n, ring_pos;
    uint16_t make_w[NMAKES];
};

/* A fully drawn ad. */
typedef struct {
    uint64_t id;
    const make_t *make;
    const model_t *model;
    const char *color, *fuel, *gearbox, *body, *condition, *seller_type, *region, *emission;
    int damaged;
    int64_t doors, price, mileage, year, power_kw, seats, engine_cc, co2, owners;
} ad_t;

/* ---- JSON append helpers (no escaping: callers pass JSON-safe text) ---- */

/* ,"key":"val" (first: no comma) */
static void kv_str(pd_buf *b, int *first, const char *key, const char *val)
{
    if (!*first) PD_BUF_LIT(b, ",");
    *first = 0;
    PD_BUF_LIT(b, "\"");
    pd_buf_puts(b, key);
    PD_BUF_LIT(b, "\":\"");
    pd_buf_puts(b, val);
    PD_BUF_LIT(b, "\"");
}

static void kv_int(pd_buf *b, int *first, const char *key, int64_t v)
{
    if (!*first) PD_BUF_LIT(b, ",");
    *first = 0;
    PD_BUF_LIT(b, "\"");
    pd_buf_puts(b, key);
    PD_BUF_LIT(b, "\":");
    pd_buf_put_i64(b, v);
}

static void kv_bool(pd_buf *b, int *first, const char *key, int v)
{
    if (!*first) PD_BUF_LIT(b, ",");
    *first = 0;
    PD_BUF_LIT(b, "\"");
    pd_buf_puts(b, key);
    if (v)
        PD_BUF_LIT(b, "\":true");
    else
        PD_BUF_LIT(b, "\":false");
}

/* ---- construction ---- */

static int year_of_ms(int64_t ms)
{
    int y;
    unsigned m, d;
    int64_t day = ms >= 0 ? ms / DAY_MS : -((-ms + DAY_MS - 1) / DAY_MS);
    pd_civil_from_days(day, &y, &m, &d);
    return y;
}

int pd_gen_new(const pd_gen_opts *o, pd_gen **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o->count < 1) return pd_seterr(err, errlen, PD_EINVAL, "count must be >= 1");
    if (o->users < 1 || o->users > 50000000)
        return pd_seterr(err, errlen, PD_EINVAL, "users must be in 1..50000000");
    if (o->days < 1 || o->days > 36500) return pd_seterr(err, errlen, PD_EINVAL, "days must be in 1..36500");
    if (o->start_ts < 946684800000LL || o->start_ts + o->days * DAY_MS > 7258118400000LL)
        return pd_seterr(err, errlen, PD_EINVAL, "start_ts out of range (2000..2200)");
    if (!(o->dup_rate >= 0 && o->dup_rate <= 1)) return pd_seterr(err, errlen, PD_EINVAL, "dup_rate must be in 0..1");
    if (!(o->bad_rate >= 0 && o->bad_rate <= 1)) return pd_seterr(err, errlen, PD_EINVAL, "bad_rate must be in 0..1");
    if (o->dup_rate + o->bad_rate > 1) return pd_seterr(err, errlen, PD_EINVAL, "dup_rate + bad_rate must be <= 1");
    if (!(o->zipf_s >= 0 && o->zipf_s <= 10)) return pd_seterr(err, errlen, PD_EINVAL, "zipf_s must be in 0..10");

    pd_gen *g = pd_calloc(1, sizeof *g);
    g->o = *o;
    if (g->o.zipf_s == 0) g->o.zipf_s = 1.1;
    rng_seed(&g->rng, o->seed ^ 0x70726f66696c6564ULL);
    g->span_ms = o->days * DAY_MS;
    g->ref_year = year_of_ms(o->start_ts + g->span_ms - 1);
    g->ads_per_make = (uint64_t)PD_MAX(1000, o->users);
    g->last_bad = -1;
    for (int i = 0; i < NMAKES; i++) g->make_w[i] = makes[i].weight;

    /* Zipf CDF: P(rank k) proportional to k^-s. */
    size_t n = (size_t)o->users;
    g->cdf = pd_malloc(n * sizeof *g->cdf);
    double acc = 0;
    for (size_t k = 0; k < n; k++) {
        acc += pow((double)(k + 1), -g->o.zipf_s);
        g->cdf[k] = acc;
    }
    for (size_t k = 0; k < n; k++) g->cdf[k] /= acc;
    g->cdf[n - 1] = 1.0;
    *out = g;
    return PD_OK;
}

void pd_gen_free(pd_gen *g)
{
    if (!g) return;
    for (int i = 0; i < DUP_RING; i++) {
        pd_buf_free(&g->ring_json[i]);
        pd_buf_free(&g->ring_key[i]);
    }
    free(g->cdf);
    free(g);
}

int pd_gen_last_bad(const pd_gen *g) { return g->last_bad; }

/* Zipf rank in 1..users by binary search on the CDF. */
static int64_t draw_user(pd_gen *g)
{
    double u = rng_unit(&g->rng);
    size_t lo = 0, hi = (size_t)g->o.users - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (int64_t)lo + 1;
}

static int64_t round_to(int64_t v, int64_t q) { return (v + q / 2) / q * q; }

/* Draws every attribute of ad `id` from its private stream. */
static void draw_ad(const pd_gen *g, uint64_t id, ad_t *a)
{
    rng_t r;
    rng_seed(&r, mix2(g->o.seed ^ 0x6164736164736164ULL, id));
    memset(a, 0, sizeof *a);
    a->id = id;
    a->make = &makes[id % NMAKES];
    /* Earlier models of a make are more popular: weight nmodels - i. */
    int nm = a->make->nmodels;
    uint64_t x = rng_below(&r, (uint64_t)(nm * (nm + 1) / 2));
    int mi = 0;
    for (int w = nm; mi < nm - 1 && x >= (uint64_t)w; w--, mi++) x -= (uint64_t)w;
    a->model = &a->make->models[mi];
    const model_t *m = a->model;
    int body = m->body;
    a->body = body_names[body];

    int cond = pick_w(&r, condition_w, (int)PD_ARRAY_LEN(condition_w));
    a->condition = conditions[cond];
    int age;
    if (cond == C_NEW) age = 0;
    else if (cond == C_DEMO || cond == C_EMPLOYEE) age = (int)rng_below(&r, 2);
    else {
        double yrs = floor(-6.0 * log(1.0 - rng_unit(&r))); /* exponential, mean ~6 */
        age = 1 + (int)fmod(yrs, 20.0); /* wrap the long tail: year >= ref-20 */
    }
    if (m->cc == 0 && age > 10) age = 1 + age % 10; /* EVs are recent */
    a->year = g->ref_year - age;

    int fuel;
    if (m->cc == 0) fuel = F_ELECTRIC;
    else if (body == B_VAN || body == B_PICKUP) fuel = pick_w(&r, fuel_w_van, 5);
    else fuel = pick_w(&r, fuel_w_car, 5);
    if (fuel == F_HYBRID && age > 12) fuel = F_PETROL;
    a->fuel = fuels[fuel];

    int var = pick_w(&r, variant_w, 4);
    double vf = variant_pct[var] / 100.0;
    a->power_kw = (int64_t)(m->kw * vf + 0.5);
    if (fuel == F_ELECTRIC) a->engine_cc = 0;
    else a->engine_cc = var <= 1 ? m->cc : (int64_t)(m->cc * (0.8 + 0.4 * vf));

    double p_auto = (a->make->premium ? 0.7 : 0.3) + 0.02 * (a->year - 2012);
    if (fuel == F_ELECTRIC || fuel == F_HYBRID) p_auto = 1.0;
    double ug = rng_unit(&r);
    a->gearbox = ug < p_auto ? "automatic" : (ug < p_auto + 0.05 ? "semi_automatic" : "manual");

    /* Mileage: ~14k km/year (diesel +35%), demo cars a few thousand. */
    double km;
    if (cond == C_NEW) km = (double)rng_below(&r, 50);
    else if (cond == C_DEMO || cond == C_EMPLOYEE) km = 1000 + rng_unit(&r) * 14000;
    else {
        double per_year = 14000 * (fuel == F_DIESEL ? 1.35 : 1.0) * (1 + 0.3 * rng_normal(&r));
        if (per_year < 3000) per_year = 3000;
        km = per_year * (age - 0.5 + rng_unit(&r));
        if (km > 450000) km = 450000 - 50000 * rng_unit(&r);
    }
    a->mileage = cond == C_NEW ? (int64_t)km : round_to((int64_t)km, 100);

    a->damaged = cond == C_USED && rng_unit(&r) < 0.05;
    a->seller_type = (cond != C_USED || rng_unit(&r) < 0.75) ? "dealer" : "private";
    a->region = regions[pick_w(&r, region_w, (int)PD_ARRAY_LEN(region_w))];
    a->color = colors[pick_w(&r, color_w, (int)PD_ARRAY_LEN(color_w))];

    /* Price: new price * variant * depreciation(age, km) * condition. */
    double price = m->new_price * (1 + (vf - 1) * 0.8);
    double dep = a->make->premium ? 0.89 : 0.87;
    price *= pow(dep, age);
    if (cond != C_NEW) price *= 0.92;
    price *= 1.0 / (1.0 + a->mileage / 600000.0);
    if (a->damaged) price *= 0.6;
    if (a->seller_type[0] == 'p') price *= 0.95;
    price *= exp(0.08 * rng_normal(&r));
    if (price < 600) price = 600;
    a->price = (int64_t)(price / 100) * 100 - 10; /* 18990 style */

    if (fuel == F_ELECTRIC) {
        a->co2 = 0;
        a->emission = "euro6d";
    } else {
        double co2 = 85 + a->power_kw * 0.45 + (fuel == F_DIESEL ? -8 : 0) + (fuel == F_HYBRID ? -35 : 0)
                     + (body == B_SUV || body == B_VAN ? 20 : 0) + 6 * rng_normal(&r);
        if (a->year < 2010) co2 += 15;
        a->co2 = (int64_t)PD_MAX(40.0, co2);
        a->emission = a->year >= 2021 ? "euro6d" : a->year >= 2018 ? "euro6d-temp"
                      : a->year >= 2015 ? "euro6" : a->year >= 2011 ? "euro5"
                      : a->year >= 2006 ? "euro4" : "euro3";
    }

    switch (body) {
    case B_COUPE: case B_CONV: a->doors = 2; a->seats = strcmp(m->name, "MX-5") == 0 ? 2 : 4; break;
    case B_SMALL: case B_HATCH: a->doors = rng_unit(&r) < 0.2 ? 3 : 5; a->seats = m->kw < 55 ? 4 : 5; break;
    case B_SEDAN: case B_PICKUP: a->doors = 4; a->seats = 5; break;
    case B_VAN: a->doors = 4; a->seats = rng_unit(&r) < 0.3 ? 3 : 7; break;
    case B_SUV: a->doors = 5; a->seats = rng_unit(&r) < 0.15 ? 7 : 5; break;
    default: a->doors = 5; a->seats = 5; break;
    }

    if (cond == C_NEW) a->owners = 0;
    else if (cond != C_USED) a->owners = 1;
    else {
        int64_t ow = 1 + (int64_t)(age * rng_unit(&r) * 0.35);
        a->owners = ow < 6 ? ow : 6;
    }
}

static void put_ad_item(pd_buf *b, const ad_t *a)
{
    int first = 1;
    PD_BUF_LIT(b, "{\"id\":\"ad-");
    pd_buf_put_i64(b, (int64_t)a->id);
    PD_BUF_LIT(b, "\"");
    first = 0;
    kv_str(b, &first, "make", a->make->name);
    kv_str(b, &first, "model", a->model->name);
    kv_str(b, &first, "color", a->color);
    kv_str(b, &first, "fuel", a->fuel);
    kv_str(b, &first, "gearbox", a->gearbox);
    kv_str(b, &first, "body", a->body);
    kv_str(b, &first, "condition", a->condition);
    kv_str(b, &first, "seller_type", a->seller_type);
    kv_str(b, &first, "region", a->region);
    kv_str(b, &first, "emission_class", a->emission);
    kv_bool(b, &first, "damaged", a->damaged);
    kv_int(b, &first, "doors", a->doors);
    kv_int(b, &first, "price", a->price);
    kv_int(b, &first, "mileage", a->mileage);
    kv_int(b, &first, "year", a->year);
    kv_int(b, &first, "power_kw", a->power_kw);
    kv_int(b, &first, "seats", a->seats);
    kv_int(b, &first, "engine_cc", a->engine_cc);
    kv_int(b, &first, "co2_g_km", a->co2);
    kv_int(b, &first, "owners", a->owners);
    PD_BUF_LIT(b, "}");
}

/* Search filters: a subset of an ad-like draw; numbers rounded like a UI
 * would (price/mileage maxima, year minimum). */
static void put_filters(pd_gen *g, pd_buf *b, const ad_t *a)
{
    rng_t *r = &g->rng;
    int first = 1;
    PD_BUF_LIT(b, "{");
    if (rng_unit(r) < 0.85) kv_str(b, &first, "make", a->make->name);
    if (!first && rng_unit(r) < 0.45) kv_str(b, &first, "model", a->model->name);
    uint64_t mask = rng_next(r);
    int extra = 0;
    for (int i = 0; i < 15 && extra < 4; i++) {
        if (((mask >> (i * 3)) & 7) != 0) continue; /* each ~1/8 */
        extra++;
        switch (i) {
        case 0: kv_str(b, &first, "fuel", a->fuel); break;
        case 1: kv_str(b, &first, "gearbox", a->gearbox); break;
        case 2: kv_str(b, &first, "body", a->body); break;
        case 3: kv_str(b, &first, "color", a->color); break;
        case 4: kv_int(b, &first, "price", round_to(a->price + 2000, 1000)); break;
        case 5: kv_int(b, &first, "mileage", round_to(a->mileage + 10000, 10000)); break;
        case 6: kv_int(b, &first, "year", a->year - 1); break;
        case 7: kv_int(b, &first, "power_kw", round_to(a->power_kw, 10)); break;
        case 8: kv_str(b, &first, "region", a->region); break;
        case 9: kv_str(b, &first, "condition", a->condition); break;
        case 10: kv_str(b, &first, "seller_type", a->seller_type); break;
        case 11: kv_bool(b, &first, "damaged", 0); break;
        case 12: kv_str(b, &first, "emission_class", a->emission); break;
        case 13: kv_int(b, &first, "doors", a->doors); break;
        default: kv_int(b, &first, "seats", a->seats); break;
        }
    }
    if (first) kv_str(b, &first, "body", a->body); /* never empty */
    PD_BUF_LIT(b, "}");
}

/* Chooses the ad a user interacts with: preferred make (60%), personal set
 * of ads within it (40%). */
static uint64_t choose_ad(pd_gen *g, int64_t user)
{
    rng_t *r = &g->rng;
    uint64_t uh = mix2(g->o.seed ^ 0x7573657273ULL, (uint64_t)user);
    int make;
    if (rng_unit(r) < 0.6) {
        /* preferred make drawn by market share from the user's hash */
        rng_t ur;
        rng_seed(&ur, uh);
        make = pick_w(&ur, g->make_w, NMAKES);
    } else {
        make = pick_w(r, g->make_w, NMAKES);
    }
    uint64_t k;
    if (rng_unit(r) < 0.4)
        k = mix2(uh, rng_below(r, PERSONAL_ADS)) % g->ads_per_make;
    else
        k = rng_below(r, g->ads_per_make);
    return k * NMAKES + (uint64_t)make + 1; /* ids from 1 */
}

/* Bits that turn a valid event into a bad one. */
enum {
    BF_NO_USER = 1, BF_USER_NUM = 2, BF_USER_EMPTY = 4, BF_NO_TS = 8, BF_TS_ARRAY = 16,
    BF_TS_TEXT = 32, BF_TS_1990 = 64, BF_NO_TYPE = 128, BF_ITEM_STR = 256,
};

static void build_event(pd_gen *g, pd_buf *out, int64_t user, int64_t ts, unsigned bf)
{
    int type = pick_w(&g->rng, type_w, (int)PD_ARRAY_LEN(type_w));
    uint64_t ad_id = choose_ad(g, user);
    ad_t a;
    draw_ad(g, type == T_SEARCH ? ad_id + (uint64_t)NMAKES * g->ads_per_make : ad_id, &a);
    if (type == T_SEARCH) a.id = 0;

    PD_BUF_LIT(out, "{\"event_id\":\"e-");
    pd_buf_put_u64(out, g->o.seed);
    PD_BUF_LIT(out, "-");
    pd_buf_put_i64(out, g->emitted);
    PD_BUF_LIT(out, "\"");
    if (bf & BF_USER_NUM) {
        PD_BUF_LIT(out, ",\"user_id\":");
        pd_buf_put_i64(out, user);
    } else if (bf & BF_USER_EMPTY) {
        PD_BUF_LIT(out, ",\"user_id\":\"\"");
    } else if (!(bf & BF_NO_USER)) {
        PD_BUF_LIT(out, ",\"user_id\":\"u-");
        pd_buf_put_i64(out, user);
        PD_BUF_LIT(out, "\"");
    }
    if (bf & BF_TS_ARRAY) {
        PD_BUF_LIT(out, ",\"ts\":[");
        pd_buf_put_i64(out, ts);
        PD_BUF_LIT(out, "]");
    } else if (bf & BF_TS_TEXT) {
        PD_BUF_LIT(out, ",\"ts\":\"yesterday\"");
    } else if (bf & BF_TS_1990) {
        PD_BUF_LIT(out, ",\"ts\":631152000000");
    } else if (!(bf & BF_NO_TS)) {
        PD_BUF_LIT(out, ",\"ts\":");
        pd_buf_put_i64(out, ts);
    }
    if (!(bf & BF_NO_TYPE)) {
        PD_BUF_LIT(out, ",\"type\":\"");
        pd_buf_puts(out, type_names[type]);
        PD_BUF_LIT(out, "\"");
    }
    if (type == T_SEARCH) {
        PD_BUF_LIT(out, ",\"filters\":");
        if (bf & BF_ITEM_STR)
            PD_BUF_LIT(out, "\"cheap cars\"");
        else
            put_filters(g, out, &a);
    } else {
        PD_BUF_LIT(out, ",\"item\":");
        if (bf & BF_ITEM_STR) {
            PD_BUF_LIT(out, "\"ad-");
            pd_buf_put_i64(out, (int64_t)a.id);
            PD_BUF_LIT(out, "\"");
        } else {
            put_ad_item(out, &a);
        }
    }
    PD_BUF_LIT(out, "}");
}

static void set_key(pd_buf *key, int64_t user)
{
    if (!key) return;
    PD_BUF_LIT(key, "u-");
    pd_buf_put_i64(key, user);
}

int pd_gen_next(pd_gen *g, pd_buf *json_out, pd_buf *key_out)
{
    if (g->emitted >= g->o.count) return PD_GEN_END;
    json_out->len = 0;
    pd_buf_reserve(json_out, 512);
    json_out->p[0] = '\0';
    if (key_out) {
        key_out->len = 0;
        pd_buf_reserve(key_out, 16);
        key_out->p[0] = '\0';
    }

    double u = rng_unit(&g->rng);
    int want_dup = u < g->o.dup_rate;
    int want_bad = !want_dup && u < g->o.dup_rate + g->o.bad_rate;
    if (want_dup && g->ring_n == 0) want_dup = 0; /* nothing to copy yet */
    int rc;
    if (want_dup) {
        int i = (int)rng_below(&g->rng, (uint64_t)g->ring_n);
        pd_buf_append(json_out, g->ring_json[i].p, g->ring_json[i].len);
        if (key_out) pd_buf_append(key_out, g->ring_key[i].p, g->ring_key[i].len);
        rc = PD_GEN_DUP;
    } else {
        int64_t user = draw_user(g);
        /* Timestamp: even spread over the span, +-JITTER_MS, clamped. */
        int64_t base = g->o.start_ts
                       + (int64_t)((double)g->emitted * (double)g->span_ms / (double)g->o.count);
        int64_t ts = base + (int64_t)rng_below(&g->rng, 2 * JITTER_MS + 1) - JITTER_MS;
        if (ts < g->o.start_ts) ts = g->o.start_ts;
        if (ts > g->o.start_ts + g->span_ms - 1) ts = g->o.start_ts + g->span_ms - 1;

        if (want_bad) {
            int kind = (int)rng_below(&g->rng, PD_GEN_BAD__COUNT);
            static const unsigned kind_bits[PD_GEN_BAD__COUNT] = {
                0, 0, BF_NO_USER, BF_USER_NUM, BF_USER_EMPTY, BF_NO_TS, BF_TS_ARRAY,
                BF_TS_TEXT, BF_TS_1990, BF_NO_TYPE, BF_ITEM_STR,
            };
            g->last_bad = kind;
            if (kind == PD_GEN_BAD_NOT_OBJECT) PD_BUF_LIT(json_out, "[");
            build_event(g, json_out, user, ts, kind_bits[kind]);
            if (kind == PD_GEN_BAD_NOT_OBJECT) PD_BUF_LIT(json_out, "]");
            if (kind == PD_GEN_BAD_INVALID_JSON) {
                /* Truncate somewhere in the middle: never a complete object. */
                size_t cut = json_out->len / 4 + (size_t)rng_below(&g->rng, json_out->len / 2);
                json_out->len = cut;
                json_out->p[cut] = '\0';
            }
            if (kind_bits[kind] & (BF_NO_USER | BF_USER_NUM | BF_USER_EMPTY)) {
                /* no key */
            } else if (kind != PD_GEN_BAD_INVALID_JSON && kind != PD_GEN_BAD_NOT_OBJECT) {
                set_key(key_out, user);
            }
            rc = PD_GEN_BAD;
        } else {
            build_event(g, json_out, user, ts, 0);
            set_key(key_out, user);
            /* remember for duplicates */
            int slot = g->ring_pos;
            g->ring_json[slot].len = 0;
            g->ring_key[slot].len = 0;
            pd_buf_append(&g->ring_json[slot], json_out->p, json_out->len);
            PD_BUF_LIT(&g->ring_key[slot], "u-");
            pd_buf_put_i64(&g->ring_key[slot], user);
            g->ring_pos = (g->ring_pos + 1) % DUP_RING;
            if (g->ring_n < DUP_RING) g->ring_n++;
            rc = PD_GEN_EVENT;
        }
    }
    g->emitted++;
    return rc;
}
