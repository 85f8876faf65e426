/* Windowing: assignment (tumbling, hopping, session), watermark and lateness, idle advance,
 * processing time, early firing, flush, key limit, idle eviction, exact aggregates, quantiles,
 * distinct counts, the result JSON and the memory an open key-window costs. Time is a fake
 * clock: every call takes `now_ms` from the test. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamgate/ddsketch.h"
#include "../../src/stream/stream_internal.h"
#include "streamgate/budget.h"
#include "streamgate/buf.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/event.h"
#include "streamgate/metrics.h"
#include "streamgate/streams.h"

/* ---- fixture: an engine whose callbacks record everything ---- */

struct rec_result {
    char *json;
    char *key;
    int64_t start, end;
    bool final;
    int32_t partition;
};

struct rec_late {
    char key[64];
    int64_t ts;
    int64_t window_end;
};

struct fx {
    struct sg_config cfg;
    struct sg_metrics *metrics;
    struct sg_streams *st;
    struct rec_result *res;
    size_t nres, capres;
    struct rec_late *late;
    size_t nlate, caplate;
    struct sg_event ev;
    struct sg_log *log; /* NULL: the engine logs nothing */
    size_t views_checked;
    size_t budget_limit;      /* set before fx_start: the engine gets a budget of this size */
    struct sg_budget *budget; /* NULL: no accounting, no pacing */
    bool restore;             /* set before fx_start: new keys wait for stored models */
    size_t keys_new;          /* key_new calls */
};

/* A NUL-terminated copy of a slice that is not terminated (strndup may read past it). */
static char *copy_slice(const char *p, size_t len)
{
    char *c = malloc(len + 1);
    cr_assert_not_null(c);
    memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

static bool same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/* One statistic of the view against its JSON member: null exactly when it has no value, else
 * the same double, bit for bit. */
static void check_stat(const cJSON *field, const cJSON *member, const char *name,
                       struct sg_result_stat s, const char *json)
{
    cr_assert_not_null(member, "%s: no member %s: %s", field->string, name, json);
    cr_assert_str_eq(member->string, name, "%s: member %s where %s was expected: %s", field->string,
                     member->string, name, json);
    if (!s.has_value) {
        cr_assert(cJSON_IsNull(member), "%s.%s: the view has no value, the JSON %g: %s",
                  field->string, name, member->valuedouble, json);
        cr_assert(!isfinite(s.value), "%s.%s: a finite value %g without has_value", field->string,
                  name, s.value);
        return;
    }
    cr_assert(cJSON_IsNumber(member), "%s.%s: the view has %.17g, the JSON none: %s", field->string,
              name, s.value, json);
    cr_assert(same_double(member->valuedouble, s.value), "%s.%s: view %.17g, JSON %.17g",
              field->string, name, s.value, member->valuedouble);
}

/* The result's view holds the numbers its JSON holds: the same members in the same order, the
 * same doubles, no value exactly where the JSON has null. Runs on every result of every test
 * here, while the view is still valid. */
static void check_view(const struct sg_window_result *r)
{
    cJSON *root = cJSON_ParseWithLength(r->json, r->json_len);
    cr_assert_not_null(root, "not JSON: %.*s", (int)r->json_len, r->json);
    const char *json = cJSON_PrintUnformatted(root);
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(root, "count");
    cr_assert(cJSON_IsNumber(count) && count->valuedouble == (double)r->count,
              "count %" PRIu64 ": %s", r->count, json);
    const cJSON *distinct = cJSON_GetObjectItemCaseSensitive(root, "distinct");
    cr_assert_eq(r->has_distinct, distinct != NULL, "%s", json);
    if (distinct)
        cr_assert(cJSON_IsNumber(distinct) && distinct->valuedouble == (double)r->distinct,
                  "distinct %" PRIu64 ": %s", r->distinct, json);
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    cr_assert(cJSON_IsObject(fields), "%s", json);
    const cJSON *fld = fields->child;
    for (size_t i = 0; i < r->nfields; i++, fld = fld->next) {
        const struct sg_result_field *rf = &r->fields[i];
        cr_assert_not_null(fld, "the view has field %zu (%s), the JSON not: %s", i, rf->name, json);
        cr_assert_eq(strlen(rf->name), rf->name_len);
        cr_assert_str_eq(fld->string, rf->name, "%s", json);
        const cJSON *m = fld->child;
        cr_assert(cJSON_IsNumber(m) && strcmp(m->string, "count") == 0 &&
                      m->valuedouble == (double)rf->count,
                  "%s.count %" PRIu64 ": %s", rf->name, rf->count, json);
        cr_assert_geq(rf->count, 1);
        const struct sg_result_stat stats[] = {rf->sum,    rf->min,   rf->max, rf->mean,
                                               rf->stddev, rf->first, rf->last};
        static const char *const names[] = {"sum", "min", "max", "mean", "stddev", "first", "last"};
        for (size_t k = 0; k < SG_ARRAY_SIZE(stats); k++) {
            m = m->next;
            check_stat(fld, m, names[k], stats[k], json);
        }
        for (size_t q = 0; q < rf->nquantiles; q++) {
            m = m->next;
            check_stat(fld, m, rf->quantiles[q].name, rf->quantiles[q].value, json);
        }
        if (rf->predicted) {
            const struct sg_result_stat pstats[] = {rf->forecast, rf->anomaly, rf->next};
            static const char *const pnames[] = {"forecast", "anomaly", "next"};
            for (size_t k = 0; k < SG_ARRAY_SIZE(pstats); k++) {
                m = m->next;
                check_stat(fld, m, pnames[k], pstats[k], json);
            }
        }
        cr_assert_null(m->next, "%s: the JSON has more members than the view: %s", rf->name, json);
    }
    cr_assert_null(fld, "the JSON has more fields than the view: %s", json);
    cJSON_free((void *)json);
    cJSON_Delete(root);
}

static void on_result(void *arg, const struct sg_window_result *r)
{
    struct fx *f = arg;
    check_view(r);
    f->views_checked++;
    if (f->nres == f->capres) {
        f->capres = f->capres ? f->capres * 2 : 16;
        f->res = realloc(f->res, f->capres * sizeof(*f->res));
        cr_assert_not_null(f->res);
    }
    struct rec_result *x = &f->res[f->nres++];
    x->json = copy_slice(r->json, r->json_len);
    x->key = copy_slice(r->key, r->key_len);
    x->start = r->window_start;
    x->end = r->window_end;
    x->final = r->final;
    x->partition = r->partition;
    cr_assert_eq(strlen(x->json), r->json_len);
}

static void on_late(void *arg, const struct sg_event *ev, int64_t window_end)
{
    struct fx *f = arg;
    if (f->nlate == f->caplate) {
        f->caplate = f->caplate ? f->caplate * 2 : 16;
        f->late = realloc(f->late, f->caplate * sizeof(*f->late));
        cr_assert_not_null(f->late);
    }
    struct rec_late *l = &f->late[f->nlate++];
    snprintf(l->key, sizeof(l->key), "%.*s", (int)ev->key_len, ev->key);
    l->ts = ev->ts_ms;
    l->window_end = window_end;
}

static bool on_key_new(void *arg, const char *key, size_t key_len)
{
    struct fx *f = arg;
    cr_assert_gt(key_len, 0);
    cr_assert_not_null(key);
    f->keys_new++;
    return true;
}

static void set_opt(struct fx *f, const char *name, const char *value)
{
    char err[256];
    cr_assert_eq(sg_config_set(&f->cfg, name, value, err, sizeof(err)), 0, "%s", err);
}

/* Defaults, with no quantiles and no distinct count unless a test asks. */
static void fx_init(struct fx *f, int type, int64_t size_ms)
{
    memset(f, 0, sizeof(*f));
    sg_config_defaults(&f->cfg);
    set_opt(f, "window.quantiles", "");
    cr_assert_eq(f->cfg.window_quantiles.count, 0);
    f->cfg.window_type = type;
    f->cfg.window_size_ms = (uint64_t)size_ms;
    f->cfg.window_allowed_lateness_ms = 0;
}

static void fx_start(struct fx *f)
{
    char err[256];
    cr_assert_eq(sg_config_validate(&f->cfg, err, sizeof(err)), 0, "%s", err);
    f->metrics = sg_metrics_create();
    cr_assert_not_null(f->metrics);
    if (f->budget_limit > 0) {
        static struct sg_log quiet; /* the budget logs its pauses: errors only */
        sg_log_init(&quiet, SG_LOG_ERROR, stderr);
        f->budget = sg_budget_create(f->budget_limit, (unsigned)f->cfg.limits_high_watermark,
                                     (unsigned)f->cfg.limits_low_watermark, f->metrics, &quiet);
        cr_assert_not_null(f->budget);
    }
    struct sg_streams_callbacks cbs = {
        .result = on_result, .late = on_late, .key_new = f->restore ? on_key_new : NULL, .arg = f};
    f->st = sg_streams_create(&f->cfg, f->metrics, f->log, f->budget, &cbs);
    cr_assert_not_null(f->st);
}

static void fx_clear(struct fx *f)
{
    for (size_t i = 0; i < f->nres; i++) {
        free(f->res[i].json);
        free(f->res[i].key);
    }
    f->nres = 0;
    f->nlate = 0;
}

static void fx_stop(struct fx *f)
{
    sg_streams_destroy(f->st);
    if (f->budget) /* the engine gave back all it had charged */
        cr_assert_eq(sg_budget_used_by(f->budget, SG_BUDGET_STREAMS), 0);
    sg_budget_destroy(f->budget);
    fx_clear(f);
    free(f->res);
    free(f->late);
    sg_metrics_destroy(f->metrics);
    sg_config_free(&f->cfg);
}

/* Adds an event with `n` fields; returns what sg_streams_add returned. */
static int add_fields(struct fx *f, const char *key, int64_t ts, int64_t now,
                      const char *const *names, const double *values, size_t n,
                      const char *distinct)
{
    struct sg_event *ev = &f->ev;
    memset(ev, 0, sizeof(*ev));
    ev->raw = "{}";
    ev->raw_len = 2;
    ev->key = key;
    ev->key_len = strlen(key);
    ev->ts_ms = ts;
    ev->ts_from_event = true;
    cr_assert_leq(n, SG_EVENT_MAX_FIELDS);
    for (size_t i = 0; i < n; i++) {
        ev->fields[i].name = names[i];
        ev->fields[i].name_len = strlen(names[i]);
        ev->fields[i].value = values[i];
    }
    ev->nfields = n;
    ev->distinct = distinct;
    ev->distinct_len = distinct ? strlen(distinct) : 0;
    enum sg_reject why = SG_REJECT_COUNT;
    int rc = sg_streams_add(f->st, ev, now, &why);
    if (rc == -EINVAL)
        cr_assert_eq(why, SG_REJECT_KEY_LIMIT);
    return rc;
}

/* One field "v". */
static int add(struct fx *f, const char *key, int64_t ts, int64_t now, double v)
{
    static const char *const names[] = {"v"};
    return add_fields(f, key, ts, now, names, &v, 1, NULL);
}

static uint64_t counter(struct fx *f, enum sg_metric id)
{
    return sg_metrics_counter_value(f->metrics, id, NULL);
}

/* The result whose key and start match, or NULL. */
static struct rec_result *find_result(struct fx *f, const char *key, int64_t start)
{
    for (size_t i = 0; i < f->nres; i++)
        if (strcmp(f->res[i].key, key) == 0 && f->res[i].start == start)
            return &f->res[i];
    return NULL;
}

static cJSON *parse(const char *json)
{
    cJSON *root = cJSON_Parse(json);
    cr_assert_not_null(root, "not JSON: %s", json);
    return root;
}

static double num(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    cr_assert(cJSON_IsNumber(it), "member %s missing or not a number", name);
    return it->valuedouble;
}

static const cJSON *field_of(const cJSON *root, const char *name)
{
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    cr_assert(cJSON_IsObject(fields));
    return cJSON_GetObjectItemCaseSensitive(fields, name);
}

/* Asserts a result's key, bounds, count and final flag, in the record and in its JSON. */
static void check_result(const struct rec_result *r, const char *key, int64_t start, int64_t end,
                         double count, bool final)
{
    cr_assert_not_null(r);
    cr_assert_str_eq(r->key, key);
    cr_assert_eq(r->start, start, "start %" PRId64 " != %" PRId64, r->start, start);
    cr_assert_eq(r->end, end, "end %" PRId64 " != %" PRId64, r->end, end);
    cr_assert_eq(r->final, final);
    cJSON *root = parse(r->json);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(root, "key")->valuestring, key);
    cr_assert_eq(num(root, "window_start"), (double)start);
    cr_assert_eq(num(root, "window_end"), (double)end);
    cr_assert_eq(num(root, "count"), count, "count %g != %g in %s", num(root, "count"), count,
                 r->json);
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(root, "final");
    cr_assert(final ? cJSON_IsTrue(fin) : cJSON_IsFalse(fin));
    cJSON_Delete(root);
}

static bool close_rel(double a, double b, double rel)
{
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-12;
}

/* ---- assignment ---- */

Test(tumbling, boundaries_zero_and_large_times)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_allowed_lateness_ms = 1000000; /* keep everything open until flush */
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 0, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 9999, 0, 2), 0);
    cr_assert_eq(add(&f, "k", 10000, 0, 4), 0); /* on the boundary: the window starting there */
    cr_assert_eq(add(&f, "k", -1, 0, 8), 0);    /* before the epoch: [-10000, 0) */
    cr_assert_eq(f.nres, 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 3);
    check_result(&f.res[0], "k", -10000, 0, 1, true);
    check_result(&f.res[1], "k", 0, 10000, 2, true);
    check_result(&f.res[2], "k", 10000, 20000, 1, true);
    cJSON *root = parse(f.res[1].json);
    cr_assert_eq(num(field_of(root, "v"), "sum"), 3);
    cJSON_Delete(root);
    fx_clear(&f);

    int64_t big = INT64_C(253402300799999); /* the latest time the decoder accepts */
    cr_assert_eq(add(&f, "k", big, 0, 1), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", INT64_C(253402300790000), INT64_C(253402300800000), 1, true);
    fx_stop(&f);
}

Test(hopping, membership)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_HOPPING, 10000);
    f.cfg.window_slide_ms = 5000;
    f.cfg.window_allowed_lateness_ms = 1000000;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 12000, 0, 1), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[0], "k", 5000, 15000, 1, true);
    check_result(&f.res[1], "k", 10000, 20000, 1, true);
    fx_clear(&f);

    /* On a slide boundary, and just below one. */
    cr_assert_eq(add(&f, "k", 10000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 4999, 0, 1), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 4);
    check_result(&f.res[0], "k", -5000, 5000, 1, true);
    check_result(&f.res[1], "k", 0, 10000, 1, true);
    check_result(&f.res[2], "k", 5000, 15000, 1, true);
    check_result(&f.res[3], "k", 10000, 20000, 1, true);
    fx_stop(&f);
}

Test(hopping, slide_not_dividing_size)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_HOPPING, 10000);
    f.cfg.window_slide_ms = 3000;
    f.cfg.window_allowed_lateness_ms = 1000000;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 10000, 0, 1), 0);
    sg_streams_flush(f.st);
    /* Starts that are multiples of 3000 with s <= 10000 < s + 10000: 3000, 6000, 9000. */
    cr_assert_eq(f.nres, 3);
    check_result(&f.res[0], "k", 3000, 13000, 1, true);
    check_result(&f.res[1], "k", 6000, 16000, 1, true);
    check_result(&f.res[2], "k", 9000, 19000, 1, true);
    fx_stop(&f);
}

static void session_fx(struct fx *f)
{
    fx_init(f, SG_WINDOW_SESSION, 10000);
    f->cfg.window_gap_ms = 5000;
    f->cfg.window_allowed_lateness_ms = 1000000;
    fx_start(f);
}

Test(session, grow_and_extend)
{
    struct fx f;
    session_fx(&f);
    cr_assert_eq(add(&f, "k", 1000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 3000, 0, 2), 0);
    cr_assert_eq(add(&f, "k", 7000, 0, 4), 0);  /* within gap of 3000: extends the end */
    cr_assert_eq(add(&f, "k", -3000, 0, 8), 0); /* within gap before 1000: extends the start */
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", -3000, 12000, 4, true);
    cJSON *root = parse(f.res[0].json);
    const cJSON *v = field_of(root, "v");
    cr_assert_eq(num(v, "sum"), 15);
    cr_assert_eq(num(v, "first"), 8); /* by event time */
    cr_assert_eq(num(v, "last"), 4);
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(session, separate_sessions_and_exact_gap)
{
    struct fx f;
    session_fx(&f);
    cr_assert_eq(add(&f, "k", 1000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 6000, 0, 1), 0);     /* exactly gap after 1000: a new session */
    cr_assert_eq(add(&f, "k", 20000, 0, 1), 0);    /* far away */
    cr_assert_eq(add(&f, "k", -4000, 0, 1), 0);    /* exactly gap before 1000: a new session */
    cr_assert_eq(add(&f, "other", 1000, 0, 1), 0); /* sessions are per key */
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 5);
    check_result(&f.res[0], "k", -4000, 1000, 1, true);
    check_result(&f.res[1], "k", 1000, 6000, 1, true);
    check_result(&f.res[2], "other", 1000, 6000, 1, true);
    check_result(&f.res[3], "k", 6000, 11000, 1, true);
    check_result(&f.res[4], "k", 20000, 25000, 1, true);
    fx_stop(&f);
}

Test(session, bridging_event_merges_two_sessions)
{
    struct fx f;
    session_fx(&f);
    static const char *const names[] = {"a", "b"};
    double v1[] = {1, 10}, v2[] = {2, 20}, v3[] = {3, 30};
    cr_assert_eq(add_fields(&f, "k", 1000, 0, names, v1, 1, NULL), 0);         /* a only */
    cr_assert_eq(add_fields(&f, "k", 9000, 0, names + 1, v2 + 1, 1, NULL), 0); /* b only */
    cr_assert_eq(add(&f, "k", 30000, 0, 0), 0); /* a third session, untouched */
    cr_assert_eq(f.st->windows_open, 3);
    /* [5000, 10000) overlaps [1000, 6000) and [9000, 14000). */
    cr_assert_eq(add_fields(&f, "k", 5000, 0, names, v3, 2, NULL), 0);
    cr_assert_eq(f.st->windows_open, 2);
    cr_assert_eq(f.st->heap_len, 2);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[0], "k", 1000, 14000, 3, true);
    check_result(&f.res[1], "k", 30000, 35000, 1, true);
    cJSON *root = parse(f.res[0].json);
    const cJSON *a = field_of(root, "a"), *b = field_of(root, "b");
    cr_assert_eq(num(a, "count"), 2);
    cr_assert_eq(num(a, "sum"), 4);
    cr_assert_eq(num(a, "first"), 1);
    cr_assert_eq(num(a, "last"), 3);
    cr_assert_eq(num(b, "count"), 2);
    cr_assert_eq(num(b, "sum"), 50);
    cr_assert_eq(num(b, "min"), 20);
    cr_assert_eq(num(b, "max"), 30);
    cr_assert_eq(num(b, "first"), 30); /* t=5000 comes before t=9000 */
    cr_assert_eq(num(b, "last"), 20);
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(session, bridging_by_one_millisecond)
{
    struct fx f;
    session_fx(&f); /* gap 5000 */
    cr_assert_eq(add(&f, "k", 0, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 9998, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 4999, 0, 1), 0); /* 4999 after 0 and 4999 before 9998 */
    cr_assert_eq(add(&f, "j", 0, 0, 1), 0);
    cr_assert_eq(add(&f, "j", 10000, 0, 1), 0);
    cr_assert_eq(add(&f, "j", 5000, 0, 1), 0); /* exactly gap from both: joins neither */
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 4);
    check_result(&f.res[0], "j", 0, 5000, 1, true);
    check_result(&f.res[1], "j", 5000, 10000, 1, true);
    check_result(&f.res[2], "k", 0, 14998, 3, true);
    check_result(&f.res[3], "j", 10000, 15000, 1, true);
    fx_stop(&f);
}

Test(session, fires_after_gap_and_late_when_its_session_fired)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_SESSION, 10000);
    f.cfg.window_gap_ms = 5000;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 1000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 3000, 0, 1), 0);
    cr_assert_eq(add(&f, "x", 7999, 0, 1), 0);
    cr_assert_eq(f.nres, 0);
    cr_assert_eq(add(&f, "x", 8000, 0, 1), 0); /* the watermark reaches 8000, k's end */
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", 1000, 8000, 2, true);
    /* A session for k at 2000 would be [2000, 7000): already past the watermark. */
    cr_assert_eq(add(&f, "k", 2000, 0, 1), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(f.late[0].window_end, 7000);
    cr_assert_eq(counter(&f, SG_METRIC_LATE_EVENTS_TOTAL), 1);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[1], "x", 7999, 13000, 2, true);
    fx_stop(&f);
}

/* ---- watermark, lateness, idle advance, processing time ---- */

Test(watermark, lateness_counts_out_of_order_and_rejects_late)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_allowed_lateness_ms = 2000;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 5000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 11000, 0, 2), 0); /* watermark 9000 */
    cr_assert_eq(f.nres, 0);
    cr_assert_eq(add(&f, "k", 10000 - 1000, 0, 4), 0); /* 2 s behind, within lateness */
    cr_assert_eq(f.nres, 0);
    cr_assert_eq(add(&f, "k", 12000, 0, 8), 0); /* watermark 10000: [0, 10000) fires */
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", 0, 10000, 2, true);
    cJSON *root = parse(f.res[0].json);
    cr_assert_eq(num(field_of(root, "v"), "sum"), 5);
    cJSON_Delete(root);

    /* 3 s behind the newest event (9000 < watermark 10000): late. */
    cr_assert_eq(add(&f, "k", 9000, 0, 100), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_str_eq(f.late[0].key, "k");
    cr_assert_eq(f.late[0].ts, 9000);
    cr_assert_eq(f.late[0].window_end, 10000);
    cr_assert_eq(counter(&f, SG_METRIC_LATE_EVENTS_TOTAL), 1);
    cr_assert_eq(f.nres, 1);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[1], "k", 10000, 20000, 2, true); /* the late value went nowhere */
    root = parse(f.res[1].json);
    cr_assert_eq(num(field_of(root, "v"), "sum"), 10);
    cJSON_Delete(root);
    cr_assert_eq(counter(&f, SG_METRIC_WINDOWS_FIRED_TOTAL), 2);
    fx_stop(&f);
}

Test(watermark, nothing_fires_before_the_first_event)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    fx_start(&f);
    for (int64_t now = 0; now < 100000; now += 5000)
        cr_assert_geq(sg_streams_tick(f.st, now), 1);
    cr_assert_eq(f.nres, 0);
    struct sg_gauge *lag = sg_metrics_gauge(f.metrics, SG_METRIC_WATERMARK_LAG_SECONDS, NULL);
    cr_assert_eq(lag->value, 0.0);
    /* An old event is not late: there is no watermark yet. */
    cr_assert_eq(add(&f, "k", 5, 100000, 1), 0);
    cr_assert_eq(f.nlate, 0);
    cr_assert_eq(f.st->windows_open, 1);
    cr_assert_eq(lag->value, (100000.0 - 5.0) / 1000.0);
    fx_stop(&f);
}

Test(watermark, idle_advance_fires_the_last_window)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_idle_timeout_ms = 5000;
    fx_start(&f);
    int64_t wall = 1000000;
    cr_assert_eq(add(&f, "k", 1000, wall, 1), 0);
    /* Idle for 5 s, then the watermark (1000) follows the wall clock; [0, 10000) needs 9 s. */
    int64_t next = sg_streams_tick(f.st, wall + 4999);
    cr_assert(next >= 1 && next <= 1000);
    sg_streams_tick(f.st, wall + 5000);
    sg_streams_tick(f.st, wall + 13999);
    cr_assert_eq(sg_streams_tick(f.st, wall + 13000), 1000);
    cr_assert_eq(sg_streams_tick(f.st, wall + 13500), 500); /* due in 500 ms */
    cr_assert_eq(sg_streams_tick(f.st, wall + 13999), 1);
    cr_assert_eq(f.nres, 0);
    sg_streams_tick(f.st, wall + 14000);
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", 0, 10000, 1, true);
    /* The watermark never moves back: a new event resets the idle clock, not the watermark. */
    cr_assert_eq(add(&f, "k", 5000, wall + 14000, 1), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(f.st->watermark, 10000);
    fx_stop(&f);
}

Test(watermark, processing_time)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.window_time = SG_TIME_PROCESSING;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", INT64_C(99999999999), 500, 1), 0); /* its own time is ignored */
    cr_assert_eq(add(&f, "k", 0, 900, 2), 0);
    cr_assert_eq(sg_streams_tick(f.st, 999), 1);
    cr_assert_eq(f.nres, 0);
    sg_streams_tick(f.st, 1000);
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", 0, 1000, 2, true);
    cJSON *root = parse(f.res[0].json);
    cr_assert_eq(num(field_of(root, "v"), "first"), 1);
    cr_assert_eq(num(field_of(root, "v"), "last"), 2);
    cJSON_Delete(root);
    cr_assert_eq(add(&f, "k", 0, 1500, 3), 0);
    cr_assert_eq(f.nlate, 0);
    sg_streams_tick(f.st, 2000);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[1], "k", 1000, 2000, 1, true);
    fx_stop(&f);
}

Test(watermark, hopping_late_event_still_feeds_open_windows)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_HOPPING, 10000);
    f.cfg.window_slide_ms = 5000;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 1000, 0, 1), 0); /* [-5000, 5000), [0, 10000) */
    cr_assert_eq(add(&f, "k", 6000, 0, 2), 0); /* fires [-5000, 5000) */
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", -5000, 5000, 1, true);
    /* t=4000 belongs to [-5000, 5000) (fired) and [0, 10000) (open). */
    cr_assert_eq(add(&f, "k", 4000, 0, 4), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(f.late[0].window_end, 5000);
    cr_assert_eq(counter(&f, SG_METRIC_LATE_EVENTS_TOTAL), 1);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 3);
    check_result(&f.res[1], "k", 0, 10000, 3, true);
    check_result(&f.res[2], "k", 5000, 15000, 1, true);
    fx_stop(&f);
}

Test(watermark, late_event_for_new_key_makes_no_stream)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.stream_max_keys = 1;
    fx_start(&f);
    cr_assert_eq(add(&f, "a", 5000, 0, 1), 0);
    /* At the key limit, a late event for a new key is late, not refused, and makes nothing. */
    cr_assert_eq(add(&f, "b", 10, 0, 1), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(f.late[0].window_end, 1000);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_streams_render_key(f.st, "b", 1, &out), -ENOENT);
    sg_buf_free(&out);
    cr_assert_eq(f.st->nkeys, 1);
    fx_stop(&f);
}

/* ---- the late-event log ---- */

/* A log written to memory, for reading back what the engine logged. */
struct memlog {
    struct sg_log log;
    FILE *f;
    char *data;
    size_t len;
};

static void memlog_open(struct memlog *m, enum sg_log_level level)
{
    m->data = NULL;
    m->len = 0;
    m->f = open_memstream(&m->data, &m->len);
    cr_assert_not_null(m->f);
    sg_log_init(&m->log, level, m->f);
}

static void memlog_close(struct memlog *m)
{
    fclose(m->f);
    free(m->data);
}

/* The log's lines whose "msg" is `msg`, parsed, in order; returns how many (at most max). */
static size_t memlog_lines(struct memlog *m, const char *msg, cJSON **out, size_t max)
{
    size_t n = 0;
    fflush(m->f);
    char *text = copy_slice(m->data ? m->data : "", m->len);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = parse(line);
        const cJSON *jm = cJSON_GetObjectItemCaseSensitive(j, "msg");
        if (cJSON_IsString(jm) && strcmp(jm->valuestring, msg) == 0 && n < max)
            out[n++] = j;
        else
            cJSON_Delete(j);
    }
    free(text);
    return n;
}

static void free_lines(cJSON **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(lines[i]);
}

Test(late_log, names_the_key_the_times_and_the_window_missed)
{
    struct fx f;
    struct memlog m;
    cJSON *lines[8];
    memlog_open(&m, SG_LOG_DEBUG);
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.log = &m.log;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 5000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 21000, 0, 2), 0); /* [0, 10000) fires; the watermark is 21000 */
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 0, "nothing late yet");
    cr_assert_eq(add(&f, "k", 9000, 0, 3), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 1);
    cJSON *j = lines[0];
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "key")->valuestring, "k");
    cr_assert_eq(num(j, "event_time"), 9000);
    cr_assert_eq(num(j, "window_end"), 10000);
    cr_assert_eq(num(j, "watermark"), 21000);
    cr_assert_null(cJSON_GetObjectItem(j, "suppressed"));
    cr_assert_null(cJSON_GetObjectItem(j, "hint"), "times in 1970 throughout: no unit hint");
    free_lines(lines, 1);
    fx_stop(&f);
    memlog_close(&m);
}

Test(late_log, at_most_one_line_per_interval_with_the_count_held_back)
{
    struct fx f;
    struct memlog m;
    cJSON *lines[8];
    memlog_open(&m, SG_LOG_DEBUG);
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.log_bad_input_interval_ms = 5000;
    f.log = &m.log;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 10000, 0, 1), 0);
    /* A burst of late events (one for a key with no stream) within one interval: one line. */
    for (int i = 0; i < 20; i++)
        cr_assert_eq(add(&f, i % 2 ? "k" : "other", 100 + i, 100 * i, 1), 0);
    cr_assert_eq(f.nlate, 20);
    cr_assert_eq(counter(&f, SG_METRIC_LATE_EVENTS_TOTAL), 20, "every one is counted");
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 1);
    cr_assert_eq(num(lines[0], "event_time"), 100);
    free_lines(lines, 1);
    /* The next interval's first line says how many were held back. */
    cr_assert_eq(add(&f, "k", 500, 5000, 1), 0);
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 2);
    cr_assert_eq(num(lines[1], "suppressed"), 19);
    cr_assert_eq(num(lines[1], "event_time"), 500);
    free_lines(lines, 2);
    fx_stop(&f);
    memlog_close(&m);
}

Test(late_log, hints_at_the_time_unit_for_1970_against_a_recent_watermark)
{
    struct fx f;
    struct memlog m;
    cJSON *lines[8];
    const int64_t now = INT64_C(1732460000000);
    memlog_open(&m, SG_LOG_DEBUG);
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.log = &m.log;
    f.cfg.log_bad_input_interval_ms = 0;
    fx_start(&f);
    cr_assert_eq(add(&f, "ms", now, now, 1), 0);
    /* Late by a minute in the present: an ordinary late event, no hint. */
    cr_assert_eq(add(&f, "ms", now - 60000, now, 1), 0);
    /* Epoch seconds read as milliseconds: January 1970. */
    cr_assert_eq(add(&f, "s", now / 1000, now, 1), 0);
    cr_assert_eq(f.nlate, 2);
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 2);
    cr_assert_null(cJSON_GetObjectItem(lines[0], "hint"));
    const cJSON *hint = cJSON_GetObjectItem(lines[1], "hint");
    cr_assert(cJSON_IsString(hint), "no hint for a 1970 event time");
    cr_assert_not_null(strstr(hint->valuestring, "is event.time_unit right?"), "%s",
                       hint->valuestring);
    cr_assert_not_null(strstr(hint->valuestring, "before 2001"), "%s", hint->valuestring);
    cr_assert_eq(num(lines[1], "event_time"), (double)(now / 1000));
    free_lines(lines, 2);
    fx_stop(&f);
    memlog_close(&m);
}

Test(late_log, hints_at_the_time_unit_for_a_watermark_years_ahead)
{
    struct fx f;
    struct memlog m;
    cJSON *lines[8];
    const int64_t now = INT64_C(1732460000000);
    memlog_open(&m, SG_LOG_DEBUG);
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.log = &m.log;
    f.cfg.log_bad_input_interval_ms = 0;
    fx_start(&f);
    /* Microseconds read as milliseconds: tens of thousands of years ahead. The watermark
     * follows, and the next correct event is late. */
    cr_assert_eq(add(&f, "us", now * 1000, now, 1), 0);
    cr_assert_eq(add(&f, "ms", now + 5000, now + 10, 1), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 1);
    const cJSON *hint = cJSON_GetObjectItem(lines[0], "hint");
    cr_assert(cJSON_IsString(hint), "no hint for a watermark years ahead");
    cr_assert_not_null(strstr(hint->valuestring, "is event.time_unit right?"), "%s",
                       hint->valuestring);
    cr_assert_eq(num(lines[0], "watermark"), (double)(now * 1000));
    free_lines(lines, 1);
    fx_stop(&f);
    memlog_close(&m);
}

Test(late_log, quiet_below_warn_yet_counted)
{
    struct fx f;
    struct memlog m;
    cJSON *lines[8];
    memlog_open(&m, SG_LOG_ERROR);
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.log = &m.log;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 10000, 0, 1), 0);
    cr_assert_eq(add(&f, "k", 100, 0, 1), 0);
    cr_assert_eq(f.nlate, 1);
    cr_assert_eq(counter(&f, SG_METRIC_LATE_EVENTS_TOTAL), 1);
    cr_assert_eq(memlog_lines(&m, "late event", lines, 8), 0);
    fx_stop(&f);
    memlog_close(&m);
}

/* ---- early firing, flush, key limit, eviction ---- */

Test(early, updates_changed_windows_only_then_final)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_emit_interval_ms = 1000;
    fx_start(&f);
    int64_t now = 50000;
    cr_assert_leq(sg_streams_tick(f.st, now), 1000);
    cr_assert_eq(add(&f, "a", 1000, now + 10, 1), 0);
    cr_assert_eq(add(&f, "b", 1000, now + 20, 1), 0);
    cr_assert_eq(add(&f, "a", 1500, now + 30, 1), 0);
    cr_assert_eq(sg_streams_tick(f.st, now + 500), 500);
    cr_assert_eq(f.nres, 0);
    sg_streams_tick(f.st, now + 1000);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[0], "a", 0, 10000, 2, false); /* in order of first change */
    check_result(&f.res[1], "b", 0, 10000, 1, false);
    cr_assert_eq(counter(&f, SG_METRIC_WINDOW_UPDATES_TOTAL), 2);

    sg_streams_tick(f.st, now + 2000); /* nothing changed */
    cr_assert_eq(f.nres, 2);
    cr_assert_eq(add(&f, "b", 2000, now + 2100, 1), 0);
    sg_streams_tick(f.st, now + 3000);
    cr_assert_eq(f.nres, 3);
    check_result(&f.res[2], "b", 0, 10000, 2, false);

    /* A changed window that fires before the next interval gives only its final result. */
    cr_assert_eq(add(&f, "a", 3000, now + 3100, 1), 0);
    cr_assert_eq(add(&f, "c", 10000, now + 3200, 1), 0); /* watermark 10000: a and b fire */
    cr_assert_eq(f.nres, 5);
    check_result(&f.res[3], "a", 0, 10000, 3, true);
    check_result(&f.res[4], "b", 0, 10000, 2, true);
    sg_streams_tick(f.st, now + 4000);
    cr_assert_eq(f.nres, 6);
    check_result(&f.res[5], "c", 10000, 20000, 1, false);
    cr_assert_eq(counter(&f, SG_METRIC_WINDOW_UPDATES_TOTAL), 4);
    cr_assert_eq(counter(&f, SG_METRIC_WINDOWS_FIRED_TOTAL), 2);
    fx_stop(&f);
}

Test(flush, emits_every_open_window_final_in_end_order)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.window_allowed_lateness_ms = 100000;
    fx_start(&f);
    cr_assert_eq(add(&f, "b", 2500, 0, 1), 0);
    cr_assert_eq(add(&f, "a", 2500, 0, 1), 0);
    cr_assert_eq(add(&f, "c", 500, 0, 1), 0);
    cr_assert_eq(add(&f, "a", 1500, 0, 1), 0);
    cr_assert_eq(add(&f, "ab", 2500, 0, 1), 0);
    cr_assert_eq(f.nres, 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 5);
    check_result(&f.res[0], "c", 0, 1000, 1, true);
    check_result(&f.res[1], "a", 1000, 2000, 1, true);
    check_result(&f.res[2], "a", 2000, 3000, 1, true); /* ties by key */
    check_result(&f.res[3], "ab", 2000, 3000, 1, true);
    check_result(&f.res[4], "b", 2000, 3000, 1, true);
    cr_assert_eq(f.st->windows_open, 0);
    struct sg_gauge *open = sg_metrics_gauge(f.metrics, SG_METRIC_WINDOWS_OPEN, NULL);
    cr_assert_eq(open->value, 0.0);
    sg_streams_flush(f.st); /* nothing left */
    cr_assert_eq(f.nres, 5);
    fx_stop(&f);
}

Test(limits, key_limit_refuses_new_keys_and_changes_nothing)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.stream_max_keys = 2;
    fx_start(&f);
    cr_assert_eq(add(&f, "a", 100, 0, 1), 0);
    cr_assert_eq(add(&f, "b", 100, 0, 1), 0);
    /* A new key past the limit: refused, and its time moves no watermark. */
    cr_assert_eq(add(&f, "c", 5000, 0, 1), -EINVAL);
    cr_assert_eq(f.nres, 0);
    cr_assert_eq(f.st->nkeys, 2);
    cr_assert_eq(f.st->watermark, 100);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_streams_render_key(f.st, "c", 1, &out), -ENOENT);
    sg_buf_free(&out);
    cr_assert_eq(add(&f, "a", 200, 0, 1), 0); /* known keys go on */
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[0], "a", 0, 1000, 2, true);
    fx_stop(&f);
}

Test(limits, idle_keys_are_evicted_and_can_come_back)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.window_time = SG_TIME_PROCESSING;
    f.cfg.stream_key_idle_timeout_ms = 5000;
    f.cfg.stream_max_keys = 1;
    fx_start(&f);
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(add(&f, "k", 0, 100, 1), 0);
    sg_streams_tick(f.st, 1000); /* fires; idle from 1000 */
    cr_assert_eq(f.nres, 1);
    cr_assert_eq(sg_streams_tick(f.st, 5500), 500);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &out), 0);
    cr_assert_eq(add(&f, "other", 0, 5600, 1), -EINVAL); /* k still holds the only slot */
    sg_streams_tick(f.st, 6000);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &out), -ENOENT);
    cr_assert_eq(counter(&f, SG_METRIC_KEYS_EVICTED_TOTAL), 1);
    struct sg_gauge *keys = sg_metrics_gauge(f.metrics, SG_METRIC_KEYS_ACTIVE, NULL);
    cr_assert_eq(keys->value, 0.0);

    cr_assert_eq(add(&f, "k", 0, 6100, 7), 0); /* back, as a fresh stream */
    cr_assert_eq(keys->value, 1.0);
    sg_buf_reset(&out);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &out), 0);
    sg_streams_tick(f.st, 7000);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[1], "k", 6000, 7000, 1, true);

    /* A key that gets a window again leaves the idle list and is not evicted. */
    cr_assert_eq(add(&f, "k", 0, 11500, 1), 0);
    sg_streams_tick(f.st, 12100);
    sg_streams_tick(f.st, 13000);
    cr_assert_eq(counter(&f, SG_METRIC_KEYS_EVICTED_TOTAL), 1);
    sg_buf_free(&out);
    fx_stop(&f);
}

Test(limits, zero_idle_timeout_evicts_at_once)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.stream_key_idle_timeout_ms = 0;
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 100, 0, 1), 0);
    cr_assert_eq(add(&f, "x", 1000, 0, 1), 0); /* k's window fires */
    sg_streams_tick(f.st, 0);
    cr_assert_eq(counter(&f, SG_METRIC_KEYS_EVICTED_TOTAL), 1);
    cr_assert_eq(f.st->nkeys, 1);
    fx_stop(&f);
}

Test(limits, fields_past_max_fields_and_name_table_are_ignored)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.event_max_fields = 2;
    f.cfg.window_allowed_lateness_ms = 100000;
    fx_start(&f);
    static const char *const names[] = {"a", "b", "c"};
    double v[] = {1, 2, 3};
    cr_assert_eq(add_fields(&f, "k", 1, 0, names, v, 2, NULL), 0);
    cr_assert_eq(add_fields(&f, "k", 2, 0, names + 1, v + 1, 2, NULL), 0); /* c: third field */
    /* A name longer than the limit is dropped and counted. */
    char longname[SG_STREAMS_MAX_NAME_LEN + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *ln[] = {longname};
    cr_assert_eq(add_fields(&f, "j", 1, 0, ln, v, 1, NULL), 0);
    cr_assert_eq(counter(&f, SG_METRIC_FIELD_NAMES_DROPPED_TOTAL), 1);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    cJSON *root = parse(find_result(&f, "k", 0)->json);
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    cr_assert_eq(cJSON_GetArraySize(fields), 2);
    cr_assert_eq(num(field_of(root, "b"), "count"), 2);
    cr_assert_null(field_of(root, "c"));
    cJSON_Delete(root);
    root = parse(find_result(&f, "j", 0)->json);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "fields")), 0);
    cr_assert_eq(num(root, "count"), 1);
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(limits, name_table_is_bounded)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.event_max_fields = SG_EVENT_MAX_FIELDS;
    fx_start(&f);
    static char names[SG_STREAMS_MAX_NAMES + 64][16];
    const char *ptr[SG_EVENT_MAX_FIELDS];
    double v[SG_EVENT_MAX_FIELDS] = {0};
    size_t total = SG_STREAMS_MAX_NAMES + 64;
    for (size_t i = 0; i < total; i += SG_EVENT_MAX_FIELDS) {
        for (size_t j = 0; j < SG_EVENT_MAX_FIELDS; j++) {
            snprintf(names[i + j], sizeof(names[0]), "f%zu", i + j);
            ptr[j] = names[i + j];
        }
        cr_assert_eq(add_fields(&f, "k", 1, 0, ptr, v, SG_EVENT_MAX_FIELDS, NULL), 0);
    }
    cr_assert_eq(f.st->nnames, SG_STREAMS_MAX_NAMES);
    cr_assert_eq(counter(&f, SG_METRIC_FIELD_NAMES_DROPPED_TOTAL), 64);
    fx_stop(&f);
}

/* ---- aggregates ---- */

Test(aggregates, exact_statistics)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 100000);
    f.cfg.window_allowed_lateness_ms = 100000;
    fx_start(&f);
    /* Values with their event times, arriving out of time order. */
    double vals[] = {3.5, -2, 10, 7.25, 0, 1e-3, 0.1, 123456.789};
    int64_t ts[] = {500, 100, 900, 50, 900, 300, 700, 200};
    size_t n = SG_ARRAY_SIZE(vals);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(add(&f, "k", ts[i], 0, vals[i]), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);

    double sum = 0, min = INFINITY, max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        sum += vals[i];
        min = fmin(min, vals[i]);
        max = fmax(max, vals[i]);
    }
    double mean = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (vals[i] - mean) * (vals[i] - mean);
    double stddev = sqrt(ss / (double)n);

    cJSON *root = parse(f.res[0].json);
    const cJSON *v = field_of(root, "v");
    cr_assert_eq(num(v, "count"), (double)n);
    cr_assert(close_rel(num(v, "sum"), sum, 1e-12), "sum %.17g vs %.17g", num(v, "sum"), sum);
    cr_assert_eq(num(v, "min"), min);
    cr_assert_eq(num(v, "max"), max);
    cr_assert(close_rel(num(v, "mean"), mean, 1e-12));
    cr_assert(close_rel(num(v, "stddev"), stddev, 1e-9), "stddev %.17g vs %.17g", num(v, "stddev"),
              stddev);
    cr_assert_eq(num(v, "first"), 7.25); /* t=50 */
    cr_assert_eq(num(v, "last"), 0);     /* t=900, arrived after 10 */
    /* Numbers are printed shortest-exact: 0.1 reads back as 0.1, not 0.10000000000000001. */
    cr_assert_not_null(strstr(f.res[0].json, "\"min\":-2,"));
    cJSON_Delete(root);
    fx_stop(&f);
}

static uint64_t lcg_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 11;
}

/* Every active stream's last window is its list's last. */
static void check_last_windows(const struct fx *f)
{
    const struct sg_streams *st = f->st;
    for (size_t i = 0; i <= st->mask; i++) {
        const struct sg_stream *s = st->slots[i];
        if (!s || s->is_idle)
            continue;
        const struct sg_window *last = NULL;
        for (const struct sg_window *w = s->u.windows; w; w = w->next)
            last = w;
        cr_assert_eq(s->u.last, last, "key %.*s: last window %p, the list ends at %p",
                     (int)s->key_len, s->key, (void *)s->u.last, (void *)last);
    }
}

/* A key holds several windows while they wait out the allowed lateness, and its next event
 * nearly always goes to the last one, which the engine finds without walking the list. Events
 * into every held window, windows growing past their first event's fields, windows firing and
 * keys going idle and coming back in between: every window's count and sums are exact, and
 * each stream's last window stays its list's last throughout. */
Test(aggregates, events_into_every_held_window_exact)
{
    enum { KEYS = 40, EVENTS = 20000, SIZE = 1000, LAG = 3500 };
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, SIZE);
    f.cfg.window_allowed_lateness_ms = LAG;
    fx_start(&f);
    static const char *const names[] = {"a", "b", "c"};
    /* Expected per key and window: count, and the sum of each field. Windows are numbered
     * from 0; event times stay under 64 windows. */
    enum { NWIN = 64 };
    static double sums[KEYS][NWIN][3];
    static uint64_t counts[KEYS][NWIN];
    memset(sums, 0, sizeof(sums));
    memset(counts, 0, sizeof(counts));
    uint64_t seed = 42;
    int64_t newest = 0;
    for (int i = 0; i < EVENTS; i++) {
        int k = (int)(lcg_next(&seed) % KEYS);
        /* Time moves on by about 3 ms an event; an event is up to LAG - 500 ms behind the
         * newest, so it is never late and lands in any of the windows its key holds. */
        newest += (int64_t)(lcg_next(&seed) % 7);
        int64_t behind =
            (int64_t)(lcg_next(&seed) % 4) == 0 ? (int64_t)(lcg_next(&seed) % (LAG - 500)) : 0;
        int64_t ts = newest - behind < 0 ? 0 : newest - behind;
        cr_assert_lt(ts / SIZE, NWIN);
        size_t n = 1 + (size_t)(lcg_next(&seed) % 3); /* 1 to 3 fields: windows grow */
        double vals[3];
        for (size_t j = 0; j < n; j++)
            vals[j] = (double)(lcg_next(&seed) % 1000);
        char key[16];
        snprintf(key, sizeof(key), "key-%d", k);
        cr_assert_eq(add_fields(&f, key, ts, 0, names, vals, n, NULL), 0);
        counts[k][ts / SIZE]++;
        for (size_t j = 0; j < n; j++)
            sums[k][ts / SIZE][j] += vals[j];
        if (i % 97 == 0)
            check_last_windows(&f);
    }
    cr_assert_eq(f.nlate, 0);
    cr_assert_gt(f.nres, 0, "windows fired while events came");
    check_last_windows(&f);
    sg_streams_flush(f.st);
    size_t windows = 0;
    for (int k = 0; k < KEYS; k++)
        for (int w = 0; w < NWIN; w++) {
            if (counts[k][w] == 0)
                continue;
            windows++;
            char key[16];
            snprintf(key, sizeof(key), "key-%d", k);
            const struct rec_result *r = find_result(&f, key, (int64_t)w * SIZE);
            cr_assert_not_null(r, "no result for %s window %d", key, w);
            cJSON *root = parse(r->json);
            cr_assert_eq(num(root, "count"), (double)counts[k][w], "%s window %d", key, w);
            for (int j = 0; j < 3; j++) {
                const cJSON *fld = cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(root, "fields"), names[j]);
                double got = fld ? num(fld, "sum") : 0;
                cr_assert_eq(got, sums[k][w][j], "%s window %d field %s: %g, want %g", key, w,
                             names[j], got, sums[k][w][j]);
            }
            cJSON_Delete(root);
        }
    cr_assert_eq(f.nres, windows, "one result per window with events");
    fx_stop(&f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

Test(aggregates, quantiles_within_one_percent)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000000);
    set_opt(&f, "window.quantiles", "p50,p90,p99,p99.9,p100");
    fx_start(&f);
    enum { N = 20000 };
    static double vals[N];
    uint64_t seed = 42;
    for (size_t i = 0; i < N; i++) {
        /* Spread over several orders of magnitude. */
        double u = (double)(lcg_next(&seed) % 1000000) / 1000000.0;
        vals[i] = exp(u * 9.0) * 0.5;
        cr_assert_eq(add(&f, "k", (int64_t)(i % 1000), 0, vals[i]), 0);
    }
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    qsort(vals, N, sizeof(vals[0]), cmp_double);
    cJSON *root = parse(f.res[0].json);
    const cJSON *v = field_of(root, "v");
    const char *qn[] = {"p50", "p90", "p99", "p99.9", "p100"};
    double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < SG_ARRAY_SIZE(qn); i++) {
        double exact = vals[(size_t)floor(qs[i] * (N - 1))];
        double est = num(v, qn[i]);
        cr_assert(close_rel(est, exact, 0.01), "%s: %g vs exact %g", qn[i], est, exact);
    }
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(aggregates, distinct_within_three_standard_errors)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000000);
    set_opt(&f, "window.distinct_field", "user");
    f.cfg.window_distinct_precision = 12;
    f.cfg.window_allowed_lateness_ms = 10000000;
    fx_start(&f);
    const size_t distinct = 5000;
    char user[32];
    for (size_t i = 0; i < 3 * distinct; i++) {
        snprintf(user, sizeof(user), "user-%zu", (i * 7919) % distinct);
        static const char *const names[] = {"v"};
        double v = 1;
        cr_assert_eq(add_fields(&f, "k", (int64_t)i, 0, names, &v, 1, user), 0);
    }
    cr_assert_eq(add(&f, "k", 5, 0, 1), 0); /* no distinct value: adds nothing to it */
    /* A second window with few values, merged-free: linear counting territory. */
    for (size_t i = 0; i < 10; i++) {
        snprintf(user, sizeof(user), "u%zu", i % 5);
        cr_assert_eq(add_fields(&f, "k", 2000000 + (int64_t)i, 0, NULL, NULL, 0, user), 0);
    }
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    cJSON *root = parse(f.res[0].json);
    double est = num(root, "distinct");
    double se = 1.04 / sqrt(4096.0);
    cr_assert(fabs(est - (double)distinct) <= 3 * se * (double)distinct, "distinct %g", est);
    cr_assert_eq(est, floor(est)); /* an integer */
    cr_assert_eq(num(root, "count"), 3 * distinct + 1);
    cJSON_Delete(root);
    root = parse(f.res[1].json);
    cr_assert_eq(num(root, "distinct"), 5);
    cJSON_Delete(root);
    fx_stop(&f);
}

/* A field's sketch lives in its window's memory: when new fields make the window grow (and
 * move), every sketch moves with it, those still in their own few bytes and those that spilled
 * into an array of their own alike. */
Test(aggregates, quantiles_survive_a_growing_window)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000000);
    set_opt(&f, "window.quantiles", "p50,p100");
    fx_start(&f);
    static const char *const names[] = {"narrow", "wide", "c", "d", "e", "f", "g", "h", "i"};
    double v[SG_ARRAY_SIZE(names)];
    enum { N = 900 };
    for (int i = 0; i < N; i++) {
        v[0] = 20.0 + (i % 3);         /* three buckets: stays in the sketch itself */
        v[1] = (double)(i + 1) * 37.0; /* four decades: needs an array of its own */
        for (size_t k = 2; k < SG_ARRAY_SIZE(v); k++)
            v[k] = (double)k;
        /* One more field every 100 events: the window grows from 1 field to 9. */
        size_t n = 1 + (size_t)(i / 100);
        cr_assert_eq(add_fields(&f, "k", i, 0, names, v, n, NULL), 0);
    }
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cJSON *root = parse(f.res[0].json);
    cr_assert(close_rel(num(field_of(root, "narrow"), "p50"), 21.0, 0.01));
    cr_assert(close_rel(num(field_of(root, "narrow"), "p100"), 22.0, 0.01));
    cr_assert_eq(num(field_of(root, "wide"), "count"), N - 100);
    cr_assert(close_rel(num(field_of(root, "wide"), "p100"), (double)N * 37.0, 0.01));
    cr_assert(close_rel(num(field_of(root, "i"), "p50"), 8.0, 0.01));
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(aggregates, session_merge_keeps_quantiles_and_distinct)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_SESSION, 1000);
    f.cfg.window_gap_ms = 1000;
    f.cfg.window_allowed_lateness_ms = 1000000;
    set_opt(&f, "window.quantiles", "p50");
    set_opt(&f, "window.distinct_field", "user");
    fx_start(&f);
    static const char *const names[] = {"v"};
    double a = 10, b = 20, c = 30;
    cr_assert_eq(add_fields(&f, "k", 0, 0, names, &a, 1, "x"), 0);
    cr_assert_eq(add_fields(&f, "k", 1800, 0, names, &c, 1, "y"), 0);
    cr_assert_eq(add_fields(&f, "k", 900, 0, names, &b, 1, "x"), 0); /* bridges both */
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "k", 0, 2800, 3, true);
    cJSON *root = parse(f.res[0].json);
    cr_assert(close_rel(num(field_of(root, "v"), "p50"), 20, 0.01));
    cr_assert_eq(num(root, "distinct"), 2);
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(aggregates, quantiles_stay_within_min_and_max)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "window.quantiles", "p1,p50,p99");
    fx_start(&f);
    static const char *const names[] = {"v"};
    double a = 2, b = 4;
    cr_assert_eq(add_fields(&f, "k", 0, 0, names, &a, 1, NULL), 0);
    cr_assert_eq(add_fields(&f, "k", 1, 0, names, &b, 1, NULL), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cJSON *root = parse(f.res[0].json);
    const cJSON *v = field_of(root, "v");
    /* The sketch's bucket for 2 is represented by a value just under 2. */
    for (int i = 0; i < 3; i++) {
        const char *q = (const char *[]){"p1", "p50", "p99"}[i];
        cr_assert(num(v, q) >= 2 && num(v, q) <= 4, "%s = %g outside [2, 4]", q, num(v, q));
    }
    cr_assert_eq(num(v, "p1"), 2);
    cJSON_Delete(root);
    fx_stop(&f);
}

/* ---- the result document ---- */

static void check_order(const cJSON *obj, const char *const *names, size_t n)
{
    size_t i = 0;
    for (const cJSON *it = obj->child; it; it = it->next, i++) {
        cr_assert_lt(i, n, "unexpected member %s", it->string);
        cr_assert_str_eq(it->string, names[i]);
    }
    cr_assert_eq(i, n);
}

Test(result, json_members_in_documented_order)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "window.quantiles", "p50,p99.9");
    set_opt(&f, "window.distinct_field", "user");
    f.cfg.window_allowed_lateness_ms = 100000;
    fx_start(&f);
    static const char *const names[] = {"temp", "we\"ird\n"};
    double v[] = {21.5, -1};
    const char *key = "dev \"1\"\n\\";
    cr_assert_eq(add_fields(&f, key, 10, 0, names, v, 2, "alice"), 0);
    cr_assert_eq(add_fields(&f, key, 20, 0, names, v, 1, "bob"), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cJSON *root = parse(f.res[0].json);
    static const char *const top[] = {"key",    "window_start", "window_end", "count",
                                      "fields", "distinct",     "final"};
    check_order(root, top, SG_ARRAY_SIZE(top));
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(root, "key")->valuestring, key);
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(root, "fields");
    static const char *const fnames[] = {"temp", "we\"ird\n"};
    check_order(fields, fnames, 2);
    static const char *const members[] = {"count",    "sum",     "min",  "max", "mean",
                                          "stddev",   "first",   "last", "p50", "p99.9",
                                          "forecast", "anomaly", "next"};
    for (const cJSON *fld = fields->child; fld; fld = fld->next)
        check_order(fld, members, SG_ARRAY_SIZE(members));
    const cJSON *temp = field_of(root, "temp");
    /* A key's first window: nothing to forecast or score yet; next is its mean. */
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(temp, "forecast")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(temp, "anomaly")));
    cr_assert_eq(num(temp, "next"), 21.5);
    cr_assert_eq(num(temp, "count"), 2);
    cr_assert_eq(num(temp, "stddev"), 0);
    cr_assert(close_rel(num(temp, "p50"), 21.5, 0.01));
    cr_assert_eq(num(field_of(root, "we\"ird\n"), "count"), 1);
    cr_assert_eq(num(root, "distinct"), 2);
    cr_assert_eq(f.res[0].partition, sg_streams_partition(f.st, key, strlen(key)));
    cJSON_Delete(root);
    fx_stop(&f);
}

Test(result, shortest_round_trip_numbers)
{
    struct sg_buf b;
    sg_buf_init(&b, 0);
    double vals[] = {0.1, 1.0 / 3.0, 1e300, -2.5e-300, 6, 123456789012345678.0, -0.0};
    const char *want[] = {"0.1", "0.3333333333333333",     "1e+300", "-2.5e-300",
                          "6",   "1.2345678901234568e+17", "-0"};
    for (size_t i = 0; i < SG_ARRAY_SIZE(vals); i++) {
        sg_buf_reset(&b);
        cr_assert_eq(sg_result__append_double(&b, vals[i]), 0);
        cr_assert_eq(sg_buf_append_char(&b, '\0'), 0);
        cr_assert_str_eq(b.data, want[i]);
        cr_assert_eq(strtod(b.data, NULL), vals[i]);
    }
    sg_buf_reset(&b);
    cr_assert_eq(sg_result__append_double(&b, INFINITY), 0);
    cr_assert_eq(sg_result__append_double(&b, NAN), 0);
    cr_assert_eq(sg_buf_append_char(&b, '\0'), 0);
    cr_assert_str_eq(b.data, "nullnull");
    sg_buf_free(&b);
}

/* printf and strtod, from `prec` digits on until the text reads back: from 1, the shortest
 * text; from 15, what results were written with before the fast path. */
static void shortest_by_printf(double v, int prec, char *out, size_t size)
{
    for (; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

Test(result, short_decimals_are_written_as_printf_would)
{
    /* Data values and their sums, small and negative ones, the edges of the fixed notation:
     * the same text as printf's shortest, and it reads back exactly. */
    static const double vals[] = {45.77,
                                  23.26,
                                  0.05,
                                  -0.05,
                                  1388.78,
                                  14126.750000000004,
                                  0.0001,
                                  0.00012,
                                  -0.0001234,
                                  1e-5,
                                  999999999999999.9,
                                  123456789012.5,
                                  69.93440594059403,
                                  0.1 + 0.2,
                                  2.5,
                                  -17.125};
    struct sg_buf b;
    sg_buf_init(&b, 0);
    for (size_t i = 0; i < SG_ARRAY_SIZE(vals); i++) {
        char want[40];
        shortest_by_printf(vals[i], 1, want, sizeof(want));
        sg_buf_reset(&b);
        cr_assert_eq(sg_result__append_double(&b, vals[i]), 0);
        cr_assert_eq(sg_buf_append_char(&b, '\0'), 0);
        cr_assert_str_eq(b.data, want, "%.17g", vals[i]);
    }
    /* Random values of every shape: each reads back exactly, and is no longer than before. */
    uint64_t seed = 7;
    for (int i = 0; i < 200000; i++) {
        uint64_t r = lcg_next(&seed);
        double v;
        switch (i % 4) {
        case 0: /* two decimals */
            v = (double)(int64_t)(r % 2000000000) / 100.0 - 1e7;
            break;
        case 1: /* sums of them */
            v = (double)(r % 100000) * 0.01 + (double)(lcg_next(&seed) % 1000) * 0.37;
            break;
        case 2: /* anything in [1e-5, 1e16) */
            v = ldexp((double)(r >> 11), -53) * pow(10.0, (double)(lcg_next(&seed) % 21) - 5);
            break;
        default: { /* any finite bit pattern */
            memcpy(&v, &r, sizeof(v));
            if (!isfinite(v))
                v = 1.5;
            break;
        }
        }
        char want[40];
        shortest_by_printf(v, 15, want, sizeof(want));
        sg_buf_reset(&b);
        cr_assert_eq(sg_result__append_double(&b, v), 0);
        cr_assert_eq(sg_buf_append_char(&b, '\0'), 0);
        cr_assert_eq(strtod(b.data, NULL), v, "%s for %.17g", b.data, v);
        cr_assert_leq(strlen(b.data), strlen(want), "%s for %.17g (before: %s)", b.data, v, want);
    }
    sg_buf_free(&b);
}

Test(result, overflowing_sum_is_null_not_inf)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 1, 0, 1.5e308), 0);
    cr_assert_eq(add(&f, "k", 2, 0, 1.5e308), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cJSON *root = parse(f.res[0].json);
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(field_of(root, "v"), "sum");
    cr_assert(cJSON_IsNull(sum));
    cr_assert_eq(num(field_of(root, "v"), "max"), 1.5e308);
    cJSON_Delete(root);
    fx_stop(&f);
}

/* The view a result callback gets holds what the JSON says, in several shapes of result:
 * quantiles and a distinct count, a field that saw only non-finite values (left out of both),
 * a sum that overflowed (no value, null), several keys and windows, and no quantiles at all.
 * check_view, run on every result, compares each one. */
Test(result, view_holds_the_numbers_of_the_json)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "window.quantiles", "p50,p90,p99.9");
    set_opt(&f, "window.distinct_field", "user");
    f.cfg.window_allowed_lateness_ms = 100000;
    fx_start(&f);
    static const char *const names[] = {"temp", "empty", "big", "sp ace"};
    double v1[] = {21.5, NAN, 1.5e308, 0.1};
    double v2[] = {-3.25, INFINITY, 1.5e308, 0.2};
    cr_assert_eq(add_fields(&f, "a", 10, 0, names, v1, 4, "alice"), 0);
    cr_assert_eq(add_fields(&f, "a", 20, 0, names, v2, 4, "bob"), 0);
    cr_assert_eq(add_fields(&f, "b", 30, 0, names, v1, 1, NULL), 0);
    cr_assert_eq(add_fields(&f, "b", 1500, 0, names + 3, v2 + 3, 1, "carol"), 0);
    for (int i = 0; i < 50; i++) {
        double v = i * 1.25;
        cr_assert_eq(add_fields(&f, "c", 2000 + i, 0, names, &v, 1, i % 2 ? "x" : "y"), 0);
    }
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 4);
    cr_assert_eq(f.views_checked, 4);

    struct rec_result *a = find_result(&f, "a", 0);
    cr_assert_not_null(a);
    cJSON *root = parse(a->json);
    cr_assert_null(field_of(root, "empty"), "%s", a->json);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(field_of(root, "big"), "sum")));
    cr_assert_eq(num(field_of(root, "big"), "p99.9"), 1.5e308);
    cr_assert_eq(num(root, "distinct"), 2);
    cJSON_Delete(root);
    fx_stop(&f);

    /* No quantiles, no distinct count. */
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    fx_start(&f);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(add(&f, "k", i * 300, 0, i - 2.5), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    cr_assert_eq(f.views_checked, 2);
    root = parse(f.res[0].json);
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(root, "distinct"));
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(field_of(root, "v"), "p50"));
    cJSON_Delete(root);
    fx_stop(&f);
}

/* ---- memory ---- */

/* mallinfo2 sees glibc's heap; under a sanitizer, malloc is someone else's. */
#if defined(__SANITIZE_ADDRESS__)
#define MEASURE_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEASURE_MALLOC 0
#endif
#endif
#ifndef MEASURE_MALLOC
#define MEASURE_MALLOC 1
#endif

Test(memory, bytes_per_open_key_window)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 60000);
    f.cfg.window_allowed_lateness_ms = 0;
    fx_start(&f);
    enum { KEYS = 50000 };
    char key[32];
    size_t before = f.st->mem_bytes;
#if MEASURE_MALLOC
    struct mallinfo2 mi0 = mallinfo2();
#endif
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "device-%06d", i); /* 13 bytes, a typical id */
        cr_assert_eq(add(&f, key, 1000, 0, (double)i), 0);
    }
    cr_assert_eq(f.st->windows_open, KEYS);
    double requested = (double)(f.st->mem_bytes - before) / KEYS;
    /* The arithmetic: one window (header + one field), one stream (header + key), one key
     * slot (a pointer and a tag) at the table's load, one heap entry. */
    double slots = (double)(f.st->mask + 1) / KEYS;
    double arithmetic = (double)sg_heap_bytes(f.st->field_off + f.st->field_stride) +
                        (double)sg_heap_bytes(offsetof(struct sg_stream, key) + 13) +
                        slots * (sizeof(void *) + sizeof(uint16_t)) +
                        (double)f.st->heap_cap / KEYS * sizeof(struct sg_heap_slot);
    cr_assert(fabs(arithmetic - requested) < 1.0, "accounting %g vs arithmetic %g", requested,
              arithmetic);
    cr_log_info("per open key-window: %.1f bytes charged (window %zu, stream %zu + key, "
                "%.2f slots, heap %.2f entries; the first two as heap chunks)",
                requested, f.st->field_off + f.st->field_stride, offsetof(struct sg_stream, key),
                slots, (double)f.st->heap_cap / KEYS);
    cr_assert_leq(requested, 316.0, "%.1f bytes per key-window", requested);
#if MEASURE_MALLOC
    struct mallinfo2 mi1 = mallinfo2();
    /* Small chunks count in uordblks, the big arrays (table, heap) in mmapped hblkhd. */
    double actual = (double)(mi1.uordblks + mi1.hblkhd - mi0.uordblks - mi0.hblkhd) / KEYS;
    cr_log_info("per open key-window: %.1f bytes from malloc, its overhead included", actual);
    cr_assert_leq(actual, 316.0, "%.1f bytes per key-window from malloc", actual);
    /* What is charged is what the heap spends, chunk headers and rounding included. */
    cr_assert(fabs(actual - requested) <= 0.02 * actual, "charged %.1f, malloc %.1f", requested,
              actual);
#endif
    fx_stop(&f);
}

/* The load of a sensor fleet: each key reports a few times a window, three fields, with the
 * default quantiles. A window of one or two values per field holds no sketch; measured here
 * with two, and its quantiles are still those of its values. */
Test(memory, bytes_per_sketched_key_window_of_a_sensor)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    set_opt(&f, "window.quantiles", "p50,p90,p99");
    fx_start(&f);
    enum { KEYS = 20000 };
    static const char *const names[] = {"value", "temp", "hum"};
    char key[32];
    size_t before = f.st->mem_bytes;
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < KEYS; i++) {
            snprintf(key, sizeof(key), "device-%06d", i);
            double vals[3] = {1.0 + i % 100 + r, 20.0 + r, 50.0 - r};
            cr_assert_eq(add_fields(&f, key, 1000 + r, 0, names, vals, 3, NULL), 0);
        }
    cr_assert_eq(f.st->windows_open, KEYS);
    double per = (double)(f.st->mem_bytes - before) / KEYS;
    cr_log_info("per open key-window, 3 fields with 2 values each: %.1f bytes", per);
    cr_assert_leq(per, 510.0, "%.1f bytes per key-window (789 with a sketch per field)", per);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, (size_t)KEYS);
    /* device-000007: value {8, 9}, temp {20, 21}, hum {50, 49}: the lower quantiles are the
     * smaller value, within 1%. */
    const struct rec_result *r = find_result(&f, "device-000007", 0);
    cr_assert_not_null(r);
    cJSON *root = parse(r->json);
    const cJSON *v = field_of(root, "value"), *t = field_of(root, "temp");
    const cJSON *h = field_of(root, "hum");
    cr_assert(close_rel(num(v, "p50"), 8.0, 0.01), "%g", num(v, "p50"));
    cr_assert(close_rel(num(v, "p99"), 8.0, 0.01), "%g", num(v, "p99"));
    cr_assert(close_rel(num(t, "p90"), 20.0, 0.01), "%g", num(t, "p90"));
    cr_assert(close_rel(num(h, "p50"), 49.0, 0.01), "%g", num(h, "p50"));
    cJSON_Delete(root);
    fx_stop(&f);
}

/* ---- sessions against a brute-force model ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

Test(session, random_events_match_a_model)
{
    enum { KEYS = 5, EVENTS = 3000 };
    const int64_t gap = 500;
    struct fx f;
    fx_init(&f, SG_WINDOW_SESSION, 1000);
    f.cfg.window_gap_ms = (uint64_t)gap;
    f.cfg.window_allowed_lateness_ms = 10000000; /* everything stays open until flush */
    fx_start(&f);
    static int64_t times[KEYS][EVENTS];
    size_t n[KEYS] = {0};
    uint64_t seed = 7;
    char key[8];
    for (int i = 0; i < EVENTS; i++) {
        int k = (int)(lcg_next(&seed) % KEYS);
        /* Clustered times so sessions form, split and merge in every order. */
        int64_t t = (int64_t)(lcg_next(&seed) % 200) * 1000 + (int64_t)(lcg_next(&seed) % 1400);
        times[k][n[k]++] = t;
        snprintf(key, sizeof(key), "k%d", k);
        cr_assert_eq(add(&f, key, t, 0, (double)t), 0);
    }
    sg_streams_flush(f.st);

    size_t expected = 0;
    for (int k = 0; k < KEYS; k++) {
        qsort(times[k], n[k], sizeof(int64_t), cmp_i64);
        snprintf(key, sizeof(key), "k%d", k);
        for (size_t i = 0; i < n[k];) {
            size_t j = i + 1;
            double sum = (double)times[k][i];
            while (j < n[k] && times[k][j] - times[k][j - 1] < gap)
                sum += (double)times[k][j++];
            struct rec_result *r = find_result(&f, key, times[k][i]);
            cr_assert_not_null(r, "no session %s@%" PRId64, key, times[k][i]);
            check_result(r, key, times[k][i], times[k][j - 1] + gap, (double)(j - i), true);
            cJSON *root = parse(r->json);
            cr_assert_eq(num(field_of(root, "v"), "sum"), sum);
            cJSON_Delete(root);
            expected++;
            i = j;
        }
    }
    cr_assert_eq(f.nres, expected);
    /* Fired in (end, key, start) order. */
    for (size_t i = 1; i < f.nres; i++) {
        const struct rec_result *a = &f.res[i - 1], *b = &f.res[i];
        int c = strcmp(a->key, b->key);
        cr_assert(a->end < b->end ||
                      (a->end == b->end && (c < 0 || (c == 0 && a->start < b->start))),
                  "out of order at %zu", i);
    }
    fx_stop(&f);
}

/* ---- pacing: due windows wait while the writers' queues hold their share ---- */

#define PACE_BUDGET ((size_t)64 << 20)

/* The writers' queues: filled to the results share (firing stops) and drained again. */
static size_t queued;

static void queues_fill(struct fx *f)
{
    size_t want = f->st->results_limit;
    cr_assert_gt(want, 0);
    if (queued < want) {
        sg_budget_charge(f->budget, SG_BUDGET_QUEUES, want - queued);
        queued = want;
    }
}

static void queues_drain(struct fx *f)
{
    sg_budget_release(f->budget, SG_BUDGET_QUEUES, queued);
    queued = 0;
}

/* Two engines on the same configuration: `u` unpaced (no budget), `p` paced. */
static void pair_start(struct fx *u, struct fx *p)
{
    fx_start(u);
    p->budget_limit = PACE_BUDGET;
    fx_start(p);
    queued = 0;
    cr_assert(p->st->paced);
    cr_assert(!u->st->paced);
}

/* One event into both engines; both must answer alike. */
static void add2(struct fx *u, struct fx *p, const char *key, int64_t ts, int64_t now, double v)
{
    int ru = add(u, key, ts, now, v), rp = add(p, key, ts, now, v);
    cr_assert_eq(ru, 0);
    cr_assert_eq(rp, 0);
}

/* The paced engine emitted exactly what the unpaced one did, in the same order, and found the
 * same events late. */
static void same_output(const struct fx *u, const struct fx *p)
{
    cr_assert_eq(p->nres, u->nres, "paced %zu results, unpaced %zu", p->nres, u->nres);
    for (size_t i = 0; i < u->nres; i++) {
        cr_assert_str_eq(p->res[i].json, u->res[i].json, "result %zu", i);
        cr_assert_eq(p->res[i].final, u->res[i].final, "result %zu", i);
    }
    cr_assert_eq(p->nlate, u->nlate, "paced %zu late, unpaced %zu", p->nlate, u->nlate);
    for (size_t i = 0; i < u->nlate; i++) {
        cr_assert_str_eq(p->late[i].key, u->late[i].key, "late %zu", i);
        cr_assert_eq(p->late[i].ts, u->late[i].ts, "late %zu", i);
        cr_assert_eq(p->late[i].window_end, u->late[i].window_end, "late %zu", i);
    }
}

static void pair_stop(struct fx *u, struct fx *p)
{
    queues_drain(p);
    fx_stop(p);
    fx_stop(u);
}

Test(pacing, tumbling_waits_and_a_waiting_window_takes_no_event)
{
    struct fx u, p;
    fx_init(&u, SG_WINDOW_TUMBLING, 1000);
    fx_init(&p, SG_WINDOW_TUMBLING, 1000);
    pair_start(&u, &p);
    add2(&u, &p, "a", 100, 0, 1);
    add2(&u, &p, "b", 300, 0, 2);
    add2(&u, &p, "a", 500, 0, 3);
    queues_fill(&p);
    add2(&u, &p, "a", 1200, 1, 4); /* the watermark passes 1000: [0, 1000) is due for a and b */
    cr_assert_eq(u.nres, 2);
    cr_assert_eq(p.nres, 0, "fired while the writers' queues were full");
    cr_assert(p.st->held);
    cr_assert_eq(counter(&p, SG_METRIC_WINDOW_FIRING_STALLS_TOTAL), 1);

    /* Events for the waiting windows are late, as they are for the fired ones. */
    add2(&u, &p, "b", 900, 2, 5);  /* b's only window is due */
    add2(&u, &p, "a", 999, 3, 6);  /* a has [0, 1000) due and [1000, 2000) open */
    add2(&u, &p, "c", 950, 4, 7);  /* a new key, too late for any window */
    add2(&u, &p, "b", 1500, 5, 8); /* b's next window */
    cr_assert_eq(u.nlate, 3);
    cr_assert_eq(p.nres, 0);
    cr_assert_eq(counter(&p, SG_METRIC_WINDOW_FIRING_STALLS_TOTAL), 1,
                 "one stall, not one per "
                 "event");

    /* No spinning while windows wait, and the gauges say what waits since when. */
    int64_t next = sg_streams_tick(p.st, 1005);
    cr_assert(next >= 10 && next <= 50, "tick asks to be called again in %" PRId64 " ms", next);
    struct sg_gauge *waiting = sg_metrics_gauge(p.metrics, SG_METRIC_WINDOWS_WAITING, NULL);
    struct sg_gauge *age = sg_metrics_gauge(p.metrics, SG_METRIC_WINDOWS_WAITING_AGE_SECONDS, NULL);
    cr_assert_eq(waiting->value, 2.0);
    cr_assert_eq(age->value, 1.004, "waiting since the event at wall clock 1: %g s", age->value);

    queues_drain(&p);
    sg_streams_tick(p.st, 1010);
    cr_assert_eq(p.nres, 2);
    cr_assert(!p.st->held);
    cr_assert_eq(waiting->value, 0.0);
    cr_assert_eq(age->value, 0.0);
    check_result(&p.res[0], "a", 0, 1000, 2, true);
    check_result(&p.res[1], "b", 0, 1000, 1, true);
    sg_streams_flush(u.st);
    sg_streams_flush(p.st);
    same_output(&u, &p);
    pair_stop(&u, &p);
}

Test(pacing, hopping_waiting_windows_miss_the_event_open_ones_take_it)
{
    struct fx u, p;
    fx_init(&u, SG_WINDOW_HOPPING, 1000);
    fx_init(&p, SG_WINDOW_HOPPING, 1000);
    u.cfg.window_slide_ms = p.cfg.window_slide_ms = 500;
    pair_start(&u, &p);
    add2(&u, &p, "a", 100, 0, 1); /* [-500, 500), [0, 1000) */
    add2(&u, &p, "a", 400, 0, 2); /* the same two */
    queues_fill(&p);
    add2(&u, &p, "b", 1100, 1, 3); /* due: a's [-500, 500) and [0, 1000) */
    cr_assert_eq(u.nres, 2);
    cr_assert_eq(p.nres, 0);
    add2(&u, &p, "a", 800, 2, 4); /* [0, 1000) is due (missed), [500, 1500) opens for it */
    cr_assert_eq(u.nlate, 1);
    cr_assert_eq(p.late[0].window_end, 1000);
    queues_drain(&p);
    add2(&u, &p, "b", 1200, 3, 5); /* the next event fires what waited, first */
    cr_assert_eq(p.nres, 2);
    sg_streams_flush(u.st);
    sg_streams_flush(p.st);
    same_output(&u, &p);
    cr_assert_eq(p.nres, 5);
    check_result(&p.res[2], "a", 500, 1500, 1, true);
    pair_stop(&u, &p);
}

Test(pacing, a_waiting_session_is_neither_extended_nor_merged)
{
    struct fx u, p;
    fx_init(&u, SG_WINDOW_SESSION, 1000);
    fx_init(&p, SG_WINDOW_SESSION, 1000);
    u.cfg.window_gap_ms = p.cfg.window_gap_ms = 500;
    u.cfg.window_allowed_lateness_ms = p.cfg.window_allowed_lateness_ms = 1000;
    pair_start(&u, &p);
    add2(&u, &p, "a", 0, 0, 1);    /* [0, 500) */
    add2(&u, &p, "a", 1000, 0, 2); /* [1000, 1500) */
    queues_fill(&p);
    add2(&u, &p, "b", 1600, 1, 3); /* watermark 600: a's [0, 500) is due */
    cr_assert_eq(u.nres, 1);
    cr_assert_eq(p.nres, 0);
    add2(&u, &p, "a", 300, 2, 4);  /* within gap of the due session: a new one, [300, 800) */
    add2(&u, &p, "a", 700, 3, 5);  /* [300, 1200): now it bridges to [1000, 1500) */
    add2(&u, &p, "a", 450, 4, 6);  /* inside [300, 1500), not in the due one */
    add2(&u, &p, "b", 2700, 5, 7); /* watermark 1700: [300, 1500) and b's [1600, 2100) due */
    cr_assert_eq(u.nres, 2);
    cr_assert_eq(p.nres, 0);
    cr_assert_eq(u.nlate, 0);
    queues_drain(&p);
    sg_streams_tick(p.st, 10);
    cr_assert_eq(p.nres, 2);
    check_result(&p.res[0], "a", 0, 500, 1, true);
    check_result(&p.res[1], "a", 300, 1500, 4, true);
    sg_streams_flush(u.st);
    sg_streams_flush(p.st);
    same_output(&u, &p);
    pair_stop(&u, &p);
}

/* Random keys, times (out of order within and beyond the lateness) and values, with the
 * writers' queues filling and draining at random: the paced engine must end up with the same
 * results in the same order and the same late events. */
static void random_pair(int type, uint64_t seed)
{
    struct fx u, p;
    fx_init(&u, type, 1000);
    fx_init(&p, type, 1000);
    set_opt(&u, "window.quantiles", "p50,p99");
    set_opt(&p, "window.quantiles", "p50,p99");
    u.cfg.window_slide_ms = p.cfg.window_slide_ms = 400;
    u.cfg.window_gap_ms = p.cfg.window_gap_ms = 300;
    u.cfg.window_allowed_lateness_ms = p.cfg.window_allowed_lateness_ms = 250;
    pair_start(&u, &p);
    static const char *const names[] = {"v", "w"};
    char key[8];
    int64_t clock = 0;
    size_t stalls = 0, flips = 0;
    bool full = false;
    for (int i = 0; i < 6000; i++) {
        uint64_t r = lcg_next(&seed);
        if (r % 37 == 0) { /* the writers' queues fill up or drain */
            full = !full;
            flips++;
            if (full)
                queues_fill(&p);
            else
                queues_drain(&p);
        }
        if (r % 11 == 0) { /* a tick now and then, as the loop would run one */
            sg_streams_tick(u.st, i);
            int64_t next = sg_streams_tick(p.st, i);
            if (p.st->held) {
                cr_assert_geq(next, 10);
                /* The waiting windows' count, against a look at every open window. */
                size_t due = 0;
                for (uint32_t j = 0; j < p.st->heap_len; j++)
                    due += p.st->heap[j].end <= p.st->watermark;
                sg_window__update_waiting(p.st, true);
                cr_assert_eq(sg_metrics_gauge(p.metrics, SG_METRIC_WINDOWS_WAITING, NULL)->value,
                             (double)due);
                cr_assert_gt(due, 0);
            }
        }
        /* Time moves a few ms per event, and now and then a gap closes every session. */
        clock += (int64_t)(lcg_next(&seed) % 13) + (r % 53 == 0 ? 700 : 0);
        int64_t ts = clock - (int64_t)(lcg_next(&seed) % 900); /* some late, most not */
        snprintf(key, sizeof(key), "k%d", (int)(lcg_next(&seed) % 6));
        double vals[2] = {(double)(lcg_next(&seed) % 100000) / 7.0,
                          (double)(int64_t)(lcg_next(&seed) % 201) - 100.0};
        int ru = add_fields(&u, key, ts, i, names, vals, 1 + (r >> 20) % 2, NULL);
        int rp = add_fields(&p, key, ts, i, names, vals, 1 + (r >> 20) % 2, NULL);
        cr_assert_eq(ru, 0);
        cr_assert_eq(rp, 0);
        stalls += p.st->held;
    }
    cr_assert_gt(stalls, 100, "the queues held windows back for %zu events only", stalls);
    cr_assert_gt(flips, 50);
    cr_assert_gt(u.nlate, 10, "the data has late events");
    cr_assert_gt(u.nres, 100);
    sg_streams_flush(u.st);
    sg_streams_flush(p.st);
    same_output(&u, &p);
    pair_stop(&u, &p);
}

Test(pacing, random_tumbling_matches_the_unpaced_engine)
{
    random_pair(SG_WINDOW_TUMBLING, 11);
    random_pair(SG_WINDOW_TUMBLING, 12);
}

Test(pacing, random_hopping_matches_the_unpaced_engine)
{
    random_pair(SG_WINDOW_HOPPING, 21);
    random_pair(SG_WINDOW_HOPPING, 22);
}

Test(pacing, random_sessions_match_the_unpaced_engine)
{
    random_pair(SG_WINDOW_SESSION, 31);
    random_pair(SG_WINDOW_SESSION, 32);
}

Test(pacing, flush_emits_everything_while_the_queues_are_full)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.budget_limit = PACE_BUDGET;
    fx_start(&f);
    queued = 0;
    cr_assert_eq(add(&f, "a", 100, 0, 1), 0);
    cr_assert_eq(add(&f, "b", 100, 0, 1), 0);
    queues_fill(&f);
    cr_assert_eq(add(&f, "a", 1500, 0, 1), 0);
    cr_assert_eq(f.nres, 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 3);
    check_result(&f.res[0], "a", 0, 1000, 1, true);
    check_result(&f.res[1], "b", 0, 1000, 1, true);
    check_result(&f.res[2], "a", 1000, 2000, 1, true);
    cr_assert(!f.st->held);
    queues_drain(&f);
    fx_stop(&f);
}

Test(pacing, early_updates_wait_for_room_and_skip_waiting_windows)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_emit_interval_ms = 1000;
    f.budget_limit = PACE_BUDGET;
    fx_start(&f);
    queued = 0;
    int64_t now = 50000;
    sg_streams_tick(f.st, now);
    cr_assert_eq(add(&f, "a", 1000, now + 10, 1), 0);
    cr_assert_eq(add(&f, "b", 1000, now + 20, 1), 0);
    queues_fill(&f);
    sg_streams_tick(f.st, now + 1000); /* no room: the changed windows wait */
    cr_assert_eq(f.nres, 0);
    queues_drain(&f);
    sg_streams_tick(f.st, now + 2000);
    cr_assert_eq(f.nres, 2);
    check_result(&f.res[0], "a", 0, 10000, 1, false);
    check_result(&f.res[1], "b", 0, 10000, 1, false);

    /* A window due and waiting gets its final result only, however it changed before. */
    cr_assert_eq(add(&f, "a", 2000, now + 2100, 1), 0);
    queues_fill(&f);
    cr_assert_eq(add(&f, "c", 10000, now + 2200, 1), 0); /* a and b are due, and wait */
    queues_drain(&f);
    sg_streams_tick(f.st, now + 3000);
    cr_assert_eq(f.nres, 5);
    check_result(&f.res[2], "a", 0, 10000, 2, true);
    check_result(&f.res[3], "b", 0, 10000, 1, true);
    check_result(&f.res[4], "c", 10000, 20000, 1, false);
    fx_stop(&f);
}

Test(pacing, no_pacing_without_a_result_callback)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    fx_start(&f);
    struct sg_log quiet;
    sg_log_init(&quiet, SG_LOG_ERROR, stderr);
    struct sg_budget *b = sg_budget_create(PACE_BUDGET, 70, 50, f.metrics, &quiet);
    cr_assert_not_null(b);
    struct sg_streams_callbacks cbs = {.late = on_late, .arg = &f};
    struct sg_streams *st = sg_streams_create(&f.cfg, f.metrics, NULL, b, &cbs);
    cr_assert_not_null(st);
    cr_assert(!st->paced, "nothing is queued for nobody: no reason to hold windows");
    sg_streams_destroy(st);
    sg_budget_destroy(b);
    fx_stop(&f);
}

/* ---- the engine's bytes in the memory budget ---- */

/* What the open windows hold, with their sketches: the part of the engine's bytes the room kept
 * for new keys' next windows is reckoned from. */
static size_t recount_open(const struct sg_streams *st)
{
    size_t n = 0, hll = st->distinct ? sg_heap_bytes((size_t)1 << st->distinct_precision) : 0;
    for (uint32_t i = 0; i < st->heap_len; i++) {
        const struct sg_window *w = st->heap[i].w;
        n += sg_heap_bytes(st->field_off + w->cap * st->field_stride) + hll;
        for (unsigned j = 0; j < w->nfields; j++) {
            const struct sg_wfield *fl = sg_window__field_at(st, w, j);
            if (fl->agg.sketch)
                n += sg_ddsketch_memory(fl->agg.sketch);
        }
    }
    return n;
}

/* What the engine holds, counted from its structures. */
static size_t recount(const struct sg_streams *st)
{
    size_t n = sizeof(*st) + (st->mask + 1) * (sizeof(void *) + sizeof(uint16_t)) +
               SG_STREAMS_MAX_NAMES *
                   (sizeof(char *) + sizeof(uint32_t) + sizeof(uint16_t) + sizeof(uint8_t)) +
               SG_STREAMS_NAME_SLOTS * sizeof(uint16_t);
    for (size_t i = 0; i < st->npredict_fields; i++)
        n += strlen(st->predict_fields[i]) + 1;
    for (uint32_t i = 0; i < st->nnames; i++)
        n += st->name_lens[i] + 1u;
    n +=
        (size_t)st->heap_cap * sizeof(struct sg_heap_slot) + (size_t)st->dirty_cap * sizeof(void *);
    for (size_t i = 0; i <= st->mask; i++)
        if (st->slots[i])
            n += sg_heap_bytes(offsetof(struct sg_stream, key) + st->slots[i]->key_len) +
                 st->slots[i]->nmodels * sizeof(struct sg_predict_model);
    n += recount_open(st);
    size_t hll = st->distinct ? sg_heap_bytes((size_t)1 << st->distinct_precision) : 0;
    for (const struct sg_window *w = st->free_windows; w; w = w->next)
        n += sg_heap_bytes(st->field_off + w->cap * st->field_stride) + hll;
    return n;
}

Test(memory, every_byte_the_engine_holds_is_charged)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_SESSION, 1000);
    set_opt(&f, "window.quantiles", "p50,p99.9");
    set_opt(&f, "window.distinct_field", "user");
    f.cfg.window_gap_ms = 200;
    f.cfg.window_allowed_lateness_ms = 500;
    f.cfg.stream_key_idle_timeout_ms = 3000;
    f.budget_limit = PACE_BUDGET;
    fx_start(&f);
    size_t at_start = f.st->mem_bytes;
    cr_assert_eq(sg_budget_used_by(f.budget, SG_BUDGET_STREAMS), at_start);
    cr_assert_eq(recount(f.st), at_start);

    static const char *const names[] = {"v", "w", "x"};
    uint64_t seed = 3;
    char key[16], user[16];
    int64_t clock = 0;
    for (int i = 0; i < 20000; i++) {
        clock += (int64_t)(lcg_next(&seed) % 3);
        snprintf(key, sizeof(key), "key-%d", (int)(lcg_next(&seed) % 300));
        snprintf(user, sizeof(user), "u%d", (int)(lcg_next(&seed) % 50));
        /* Values over many decades: the sketches widen their bucket arrays. */
        double vals[3] = {ldexp(1.0, (int)(lcg_next(&seed) % 60) - 30),
                          -(double)(lcg_next(&seed) % 1000000), (double)(i % 7)};
        cr_assert_eq(add_fields(&f, key, clock - (int64_t)(lcg_next(&seed) % 400), clock, names,
                                vals, 1 + (size_t)(i % 3), user),
                     0);
        if (i % 997 == 0) {
            sg_streams_tick(f.st, clock);
            cr_assert_eq(recount(f.st), f.st->mem_bytes, "after %d events", i + 1);
            cr_assert_eq(recount_open(f.st), f.st->win_bytes, "after %d events", i + 1);
            cr_assert_eq(sg_budget_used_by(f.budget, SG_BUDGET_STREAMS), f.st->mem_bytes);
        }
    }
    cr_assert_eq(recount(f.st), f.st->mem_bytes);
    cr_assert_eq(sg_budget_used_by(f.budget, SG_BUDGET_STREAMS), f.st->mem_bytes);
    cr_assert_gt(f.st->mem_bytes, at_start + 300 * 1000, "300 keys' sessions with sketches");
    sg_streams_flush(f.st);
    cr_assert_eq(recount(f.st), f.st->mem_bytes);
    sg_streams_tick(f.st, clock + 10000); /* every key evicted */
    cr_assert_eq(f.st->nkeys, 0);
    cr_assert_eq(recount(f.st), f.st->mem_bytes);
    cr_assert_eq(sg_budget_used_by(f.budget, SG_BUDGET_STREAMS), f.st->mem_bytes);
    fx_stop(&f); /* checks that destroy gave everything back */
}

/* A field's sketch is made at its third value and counted from then on, with the bucket
 * arrays it allocates as it widens. */
Test(memory, sketch_counts_when_made_and_as_it_widens)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "window.quantiles", "p50");
    fx_start(&f);
    cr_assert_eq(add(&f, "k", 0, 0, 1.0), 0);
    cr_assert_eq(add(&f, "k", 0, 0, 2.0), 0);
    const struct sg_wfield *fl = sg_window__field_at(f.st, f.st->heap[0].w, 0);
    cr_assert_null(fl->agg.sketch, "two values need no sketch");
    size_t narrow = f.st->mem_bytes;
    for (int e = 2; e < 40; e++)
        cr_assert_eq(add(&f, "k", 0, 0, ldexp(1.0, e)), 0);
    cr_assert_not_null(fl->agg.sketch);
    cr_assert_eq(sg_ddsketch_count(fl->agg.sketch), 40, "min and max went into it first");
    size_t sketch = sg_ddsketch_memory(fl->agg.sketch);
    cr_assert_gt(sketch - sg_ddsketch_size(), 1000, "40 octaves take a bucket array");
    cr_assert_eq(f.st->mem_bytes - narrow, sketch);
    fx_stop(&f);
}

/* ---- new keys refused at limits.streams_share ---- */

Test(limits, streams_share_refuses_new_keys_and_known_keys_go_on)
{
    struct fx f;
    struct memlog m;
    cJSON *lines[4];
    memlog_open(&m, SG_LOG_INFO);
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.stream_key_idle_timeout_ms = 1000;
    f.cfg.log_bad_input_interval_ms = 60000;
    f.log = &m.log;
    f.budget_limit = 1 << 20; /* 512 KiB for the streams */
    f.cfg.limits_streams_share = 50;
    fx_start(&f);
    cr_assert_eq(f.st->streams_limit, 512u << 10);
    char key[32];
    int admitted = 0;
    for (;; admitted++) {
        snprintf(key, sizeof(key), "device-%06d", admitted);
        int rc = add(&f, key, 100, 0, 1);
        if (rc != 0) {
            cr_assert_eq(rc, -EINVAL); /* add() checked the reason: key_limit */
            break;
        }
        cr_assert_lt(admitted, 100000, "never refused");
    }
    /* Refused with room left for one more window per key taken: about half the share, since
     * each key has one window open. */
    cr_assert_geq(2 * f.st->mem_bytes + 2048, f.st->streams_limit, "%zu", f.st->mem_bytes);
    cr_assert_lt(2 * f.st->mem_bytes, f.st->streams_limit + 2048, "refused at %zu",
                 f.st->mem_bytes);
    cr_assert_eq(f.st->nkeys, (size_t)admitted);
    cr_assert_eq(
        sg_metrics_counter_value(f.metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"streams_memory\""),
        1);
    /* Nothing changed for the refused event; known keys go on, new ones stay refused. */
    struct sg_buf out;
    sg_buf_init(&out, 0);
    cr_assert_eq(sg_streams_render_key(f.st, key, strlen(key), &out), -ENOENT);
    sg_buf_free(&out);
    cr_assert_eq(add(&f, "device-000000", 200, 0, 1), 0);
    cr_assert_eq(add(&f, "another", 200, 0, 1), -EINVAL);
    cr_assert_eq(
        sg_metrics_counter_value(f.metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"streams_memory\""),
        2);
    cr_assert_eq(memlog_lines(&m,
                              "new keys refused: stream state holds limits.streams_share of "
                              "the budget, with room for the next windows of its keys",
                              lines, 4),
                 1, "one log line per interval");
    cr_assert_eq(num(lines[0], "streams_limit"), 512 << 10);
    free_lines(lines, 1);

    /* Once the windows fired and the keys left, new keys are welcome again. */
    sg_streams_tick(f.st, 20000);
    sg_streams_tick(f.st, 40000);
    cr_assert_eq(f.st->nkeys, 0);
    cr_assert_eq(add(&f, "another", 50000, 40000, 1), 0);
    fx_stop(&f);
    memlog_close(&m);
}

/* The shares follow a reload: a lower limits.streams_share refuses the next new key, a higher
 * one (or a larger limits.memory) takes it again, and limits.results_share moves with them. */
Test(limits, shares_change_live)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.budget_limit = 1 << 20;
    f.cfg.limits_streams_share = 50;
    fx_start(&f);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "device-%06d", i);
        cr_assert_eq(add(&f, key, 100, 0, i), 0, "key %d refused", i);
    }
    /* A share below what the keys hold: new keys are refused, known keys go on. */
    f.cfg.limits_streams_share = 5;
    f.cfg.limits_results_share = 10;
    sg_streams_set_shares(f.st, &f.cfg);
    cr_assert_eq(f.st->streams_limit, (1u << 20) * 5 / 100);
    cr_assert_eq(f.st->results_limit, (1u << 20) * 10 / 100);
    cr_assert_eq(add(&f, "newcomer", 100, 0, 1), -EINVAL);
    cr_assert_eq(add(&f, "device-000000", 200, 0, 1), 0);
    /* limits.memory 16 times larger: the same percent is 16 times the bytes. */
    sg_budget_set_limits(f.budget, 16u << 20, 70, 50);
    sg_streams_set_shares(f.st, &f.cfg);
    cr_assert_eq(f.st->streams_limit, (16u << 20) * 5 / 100);
    cr_assert_eq(add(&f, "newcomer", 100, 0, 1), 0);
    fx_stop(&f);
}

/* Keys whose windows have fired stay until stream.key_idle_timeout. With few windows open among
 * many such keys, the room kept for the keys' next windows is a window each, not the whole
 * engine each: a new key is still taken. */
Test(limits, keys_between_windows_do_not_reserve_the_engine_each)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.cfg.stream_key_idle_timeout_ms = 600000;
    f.budget_limit = 1 << 20; /* 512 KiB for the streams */
    f.cfg.limits_streams_share = 50;
    fx_start(&f);
    enum { KEYS = 500 }; /* about 560 fit with one window open each */
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "device-%06d", i);
        cr_assert_eq(add(&f, key, 100, 0, i), 0, "key %d refused", i);
    }
    /* One key moves on: the others' windows fire, their keys stay. */
    cr_assert_eq(add(&f, "device-000000", 5000, 0, 1), 0);
    cr_assert_eq(f.st->windows_open, 1);
    cr_assert_eq(f.st->nkeys, (size_t)KEYS);
    cr_assert_lt(f.st->mem_bytes, f.st->streams_limit / 2, "%zu", f.st->mem_bytes);
    cr_assert_eq(add(&f, "newcomer", 5000, 0, 1), 0, "a new key refused with %zu bytes held",
                 f.st->mem_bytes);
    fx_stop(&f);
}

/* Stream state alone past the high watermark pauses ingest when the keys taken open more
 * windows than the room kept for them (a lateness of several windows); with no event coming,
 * the idle watermark advance fires the windows, their memory goes back, and ingest resumes. */
Test(limits, stream_state_pauses_ingest_and_idle_time_resumes_it)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    set_opt(&f, "window.quantiles", "p50,p90,p99");
    f.cfg.limits_streams_share = 100;
    f.cfg.window_allowed_lateness_ms = 60000;
    f.cfg.window_idle_timeout_ms = 1000;
    f.budget_limit = 1 << 20;
    fx_start(&f);
    char key[32];
    int n = 0;
    for (;; n++) { /* new keys until the room kept for their next windows stops them */
        snprintf(key, sizeof(key), "device-%06d", n);
        if (add(&f, key, 1000 + n % 1000, 0, n) != 0)
            break;
        cr_assert_lt(n, 100000, "new keys never refused");
    }
    cr_assert_not(sg_budget_paused(f.budget), "new keys alone paused ingest");
    /* The keys taken go on into later windows, none due within the lateness. */
    for (int64_t t = 11000; !sg_budget_paused(f.budget); t += 10000) {
        cr_assert_lt(t, 200000, "stream state never reached the high watermark");
        for (int k = 0; k < n && !sg_budget_paused(f.budget); k++) {
            snprintf(key, sizeof(key), "device-%06d", k);
            cr_assert_eq(add(&f, key, t + k % 1000, 0, k), 0);
        }
    }
    cr_assert_eq(sg_budget_used_by(f.budget, SG_BUDGET_QUEUES), 0);
    cr_assert_geq(sg_budget_used(f.budget), (1u << 20) * 7 / 10);
    size_t fired = f.nres;
    /* Ingest is paused: no events, only ticks. */
    int64_t now = 0;
    for (; now <= 300000 && sg_budget_paused(f.budget); now += sg_streams_tick(f.st, now))
        ;
    cr_assert(!sg_budget_paused(f.budget), "still paused at wall clock %" PRId64, now);
    cr_assert_gt(f.nres, fired, "windows fired");
    cr_assert_leq(sg_budget_used(f.budget), (1u << 20) / 2);
    fx_stop(&f);
}

/* Ingest paused because the writers' queues are full is not idleness: the watermark stays where
 * the events left it for as long as the pause lasts, and the idle clock starts at its end, so
 * an event held back through the pause is not late when it comes. */
Test(pacing, a_pause_for_the_writers_does_not_run_the_idle_clock)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_idle_timeout_ms = 1000;
    f.budget_limit = PACE_BUDGET;
    fx_start(&f);
    queued = 0;
    cr_assert_eq(add(&f, "a", 9500, 0, 1), 0);
    /* The writers fall behind: their queues pass the high watermark and ingest pauses. */
    size_t over = PACE_BUDGET / 100 * (size_t)f.cfg.limits_high_watermark + 1;
    sg_budget_charge(f.budget, SG_BUDGET_QUEUES, over);
    queued = over;
    cr_assert(sg_budget_paused(f.budget));
    /* A minute of ticks while paused: nothing fires, the watermark does not move. */
    int64_t now = 0;
    while (now < 60000) {
        int64_t next = sg_streams_tick(f.st, now);
        cr_assert_gt(next, 0);
        now += next < 5000 ? next : 5000;
    }
    cr_assert_eq(f.nres, 0, "a window fired while ingest was held back");
    cr_assert_eq(f.st->watermark, 9500);
    /* The writers drain at 60 s; the event held back comes 500 ms later, on time. */
    queues_drain(&f);
    cr_assert(!sg_budget_paused(f.budget));
    sg_streams_tick(f.st, 60000);
    cr_assert_eq(add(&f, "a", 9900, 60500, 2), 0);
    cr_assert_eq(f.nlate, 0, "the held-back event was late");
    /* Then truly idle: the idle clock runs from the last event and fires the window. */
    for (now = 60500; now < 70000 && f.nres == 0; now += sg_streams_tick(f.st, now))
        ;
    cr_assert_eq(f.nres, 1);
    check_result(&f.res[0], "a", 0, 10000, 2, true);
    fx_stop(&f);
}

/* The same pause without the engine's own budget counts as before: an engine with no budget
 * has no pushback to tell idleness from. */
Test(watermark, without_a_budget_the_idle_clock_runs_from_the_last_event)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    f.cfg.window_idle_timeout_ms = 1000;
    fx_start(&f);
    cr_assert_eq(add(&f, "a", 9500, 0, 1), 0);
    sg_streams_tick(f.st, 1000);
    sg_streams_tick(f.st, 1500);
    cr_assert_eq(f.nres, 1);
    fx_stop(&f);
}

/* A fleet that reports in every window, with an allowed lateness of one window: each key holds
 * two windows at the boundary. New keys stop with room left for one more window per key taken,
 * so those keys can open their next windows without stream state reaching the high watermark:
 * it never pauses ingest on its own (which only the idle clock could end, making held-back
 * events late), and no event of a key taken is late. */
Test(limits, new_keys_leave_room_for_the_windows_within_the_lateness)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 10000);
    set_opt(&f, "window.quantiles", "p50,p90,p99");
    f.cfg.window_allowed_lateness_ms = 10000;
    f.budget_limit = 4 << 20;
    fx_start(&f);
    static const char *const names[] = {"value", "temp", "hum"};
    char key[32];
    enum { FLEET = 40000 };
    bool taken[FLEET] = {false};
    size_t peak = 0;
    int ntaken = 0;
    for (int round = 0; round < 8; round++) { /* 8 windows, two events per key in each */
        for (int e = 0; e < 2; e++)
            for (int i = 0; i < FLEET; i++) {
                snprintf(key, sizeof(key), "device-%06d", i);
                double vals[3] = {(double)i, 20.0 + e, 50.0};
                int64_t t = (int64_t)round * 10000 + e * 4000 + i % 4000;
                int rc = add_fields(&f, key, t, t, names, vals, 3, NULL);
                cr_assert(rc == 0 || !taken[i], "a key taken was refused in round %d", round);
                if (rc == 0 && !taken[i]) {
                    cr_assert_eq(round, 0, "a new key taken after the first window");
                    taken[i] = true;
                    ntaken++;
                }
                cr_assert_not(sg_budget_paused(f.budget), "stream state paused ingest");
                if (f.st->mem_bytes > peak)
                    peak = f.st->mem_bytes;
            }
    }
    cr_assert_gt(ntaken, 1000);
    cr_assert_lt(ntaken, FLEET, "the fleet is bigger than the share");
    cr_assert_leq(peak, f.st->streams_limit + f.st->streams_limit / 10, "peak %zu", peak);
    cr_assert_eq(f.nlate, 0);
    cr_assert_gt(
        sg_metrics_counter_value(f.metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"streams_memory\""),
        0);
    fx_stop(&f);
}

/* Writers that read only a result's numbers (Tablestore) get no JSON: it is not rendered. The
 * numbers are those of an engine that renders it. */
static void on_numbers(void *arg, const struct sg_window_result *r)
{
    struct fx *f = arg;
    cr_assert_null(r->json);
    cr_assert_eq(r->json_len, 0);
    cr_assert_eq(r->nfields, 1);
    struct rec_result *x = &f->res[f->nres++];
    x->key = copy_slice(r->key, r->key_len);
    x->start = r->window_start;
    x->end = r->window_end;
    x->final = r->final;
    /* The numbers as the JSON of the other engine writes them. */
    struct sg_buf b;
    sg_buf_init(&b, 0);
    cr_assert_eq(sg_buf_printf(&b, "%" PRIu64 " %.17g %.17g %.17g", r->count,
                               r->fields[0].sum.value, r->fields[0].min.value,
                               r->fields[0].quantiles[0].value.value),
                 0);
    x->json = copy_slice(b.data, b.len);
    sg_buf_free(&b);
}

Test(result, numbers_only_renders_no_json)
{
    struct fx u, n;
    fx_init(&u, SG_WINDOW_TUMBLING, 1000);
    fx_init(&n, SG_WINDOW_TUMBLING, 1000);
    set_opt(&u, "window.quantiles", "p50");
    set_opt(&n, "window.quantiles", "p50");
    fx_start(&u);
    char err[256];
    cr_assert_eq(sg_config_validate(&n.cfg, err, sizeof(err)), 0, "%s", err);
    n.metrics = sg_metrics_create();
    n.res = calloc(8, sizeof(*n.res));
    n.capres = 8;
    struct sg_streams_callbacks cbs = {.result = on_numbers, .numbers_only = true, .arg = &n};
    n.st = sg_streams_create(&n.cfg, n.metrics, NULL, NULL, &cbs);
    cr_assert_not_null(n.st);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(add(&u, "k", 100 * i, 0, 1.5 * i), 0);
        cr_assert_eq(add(&n, "k", 100 * i, 0, 1.5 * i), 0);
    }
    sg_streams_flush(u.st);
    sg_streams_flush(n.st);
    cr_assert_eq(u.nres, 1);
    cr_assert_eq(n.nres, 1);
    cJSON *root = parse(u.res[0].json);
    const cJSON *v = field_of(root, "v");
    char want[128];
    snprintf(want, sizeof(want), "%.0f %.17g %.17g %.17g", num(root, "count"), num(v, "sum"),
             num(v, "min"), num(v, "p50"));
    cJSON_Delete(root);
    cr_assert_str_eq(n.res[0].json, want);
    fx_stop(&u);
    fx_stop(&n);
}

/* ---- forecasts ---- */

static const cJSON *member(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    cr_assert_not_null(it, "no member %s", name);
    return it;
}

/* The series of test_predict.c's hand-worked case, through the engine: one event per window,
 * step 5 empty. */
Test(predict, forecasts_scores_and_gaps_in_results)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "predict.alpha", "0.5");
    set_opt(&f, "predict.beta", "0.5");
    set_opt(&f, "predict.anomaly_threshold", "3");
    set_opt(&f, "predict.warmup", "3");
    fx_start(&f);
    const int64_t steps[] = {0, 1, 2, 3, 4, 6, 8};
    const double values[] = {10, 12, 13, 17, 30, 24, 0};
    for (size_t i = 0; i < SG_ARRAY_SIZE(steps); i++)
        cr_assert_eq(add(&f, "k", steps[i] * 1000, 0, values[i]), 0);
    cr_assert_eq(f.nres, 6);
    double s = sqrt(29.0 / 9), trend = 1.5 + 0.35 * 7 / 3, fc4 = 16.3 + trend;
    for (size_t i = 0; i < 6; i++) {
        cJSON *root = parse(f.res[i].json);
        const cJSON *v = field_of(root, "v");
        const cJSON *forecast = member(v, "forecast"), *anomaly = member(v, "anomaly");
        cr_expect_eq(cJSON_IsNull(forecast), i == 0, "window %zu", i);
        cr_expect_eq(cJSON_IsNull(anomaly), i < 3, "window %zu", i);
        /* Results carry 7 significant digits (the stored model every bit). */
        if (i == 3) {
            cr_expect_eq(forecast->valuedouble, 14.66667);
            cr_expect_eq(anomaly->valuedouble, 2.333333);
            cr_expect(close_rel(num(v, "next"), fc4, 1e-6));
        }
        if (i == 4)
            cr_expect(close_rel(anomaly->valuedouble, (30 - fc4) / s, 1e-6));
        if (i == 5) { /* through the empty step 5: level + 2 trend */
            double fc = fc4 + 1.8 * s + 2 * (trend + 0.9 * s);
            cr_expect(close_rel(forecast->valuedouble, fc, 1e-6), "%.17g", forecast->valuedouble);
            cr_expect(fabs(anomaly->valuedouble) < 3);
        }
        cJSON_Delete(root);
    }
    cr_expect_eq(counter(&f, SG_METRIC_ANOMALIES_TOTAL), 1);

    /* The live query shows what the model expects of the open window, without moving it. */
    struct sg_buf b;
    sg_buf_init(&b, 1 << 16);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &b), 0);
    size_t once = b.len;
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &b), 0); /* twice: the same */
    cr_assert(b.len == 2 * once && memcmp(b.data, b.data + once, once) == 0, "%.*s", (int)b.len,
              b.data);
    /* And the key's own forecast for the window after the last fired one (step 6's next). */
    b.len = once;
    cJSON *live = cJSON_ParseWithLength(b.data, b.len);
    cr_assert_not_null(live, "%.*s", (int)b.len, b.data);
    const cJSON *open = cJSON_GetArrayItem(member(live, "windows"), 0);
    cr_expect(cJSON_IsNumber(member(field_of(open, "v"), "forecast")), "%.*s", (int)b.len, b.data);
    cJSON *res5 = parse(f.res[5].json);
    cr_expect(close_rel(num(member(live, "forecast"), "v"), num(field_of(res5, "v"), "next"), 1e-6),
              "%.*s", (int)b.len, b.data);
    cJSON_Delete(res5);
    cJSON_Delete(live);
    sg_buf_free(&b);
    fx_stop(&f);
}

Test(predict, off_or_limited_to_named_fields)
{
    static const char *const names[] = {"v", "w"};
    const double vals[] = {1, 2};
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "predict.enabled", "false");
    fx_start(&f);
    cr_assert_eq(add_fields(&f, "k", 0, 0, names, vals, 2, NULL), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cr_expect_null(strstr(f.res[0].json, "forecast"), "%s", f.res[0].json);
    fx_stop(&f);

    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "predict.fields", "w");
    fx_start(&f);
    cr_assert_eq(add_fields(&f, "k", 0, 0, names, vals, 2, NULL), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cJSON *root = parse(f.res[0].json);
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(field_of(root, "v"), "forecast"));
    cr_expect_not_null(cJSON_GetObjectItemCaseSensitive(field_of(root, "w"), "forecast"));
    cJSON_Delete(root);
    fx_stop(&f);
}

/* A key holds at most event.max_fields models; a field past them is not forecast, and counted. */
Test(predict, models_per_key_are_bounded)
{
    static const char *const a[] = {"a"}, *const b[] = {"b"};
    const double one = 1;
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "event.max_fields", "1");
    fx_start(&f);
    cr_assert_eq(add_fields(&f, "k", 0, 0, a, &one, 1, NULL), 0);
    cr_assert_eq(add_fields(&f, "k", 1000, 0, b, &one, 1, NULL), 0);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 2);
    cr_expect_not_null(strstr(f.res[0].json, "forecast"));
    cr_expect_null(strstr(f.res[1].json, "forecast"), "%s", f.res[1].json);
    cr_expect_eq(
        sg_metrics_counter_value(f.metrics, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"predict_fields\""),
        1);
    fx_stop(&f);
}

/* A model as a run of windows 0..9 with means 10 + 2 t leaves it, in its stored form. */
static void stored_model(struct sg_predict_model *m, uint8_t out[SG_PREDICT_ENCODED_SIZE])
{
    struct sg_predict_conf c = {.alpha = 0.1, .beta = 0.02, .threshold = 3.5, .warmup = 5};
    struct sg_predict_out o;
    sg_predict_init(m, 0, NULL);
    for (int t = 0; t < 10; t++)
        sg_predict_update(&c, m, t, 10 + 2 * t + (t % 2 ? 0.5 : -0.5), &o);
    sg_predict_encode(&c, m, out);
}

/* A new key's stored models, handed over before its first window fires, carry its forecasts
 * on: the first result's forecast is what the stored model expected, with a score. Fields are
 * matched by the column's spelling; a model that does not decode is skipped; a key whose first
 * window fired first starts afresh, counted. */
Test(predict, stored_models_restore_a_new_key)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.restore = true;
    fx_start(&f);
    struct sg_predict_model m;
    uint8_t enc[SG_PREDICT_ENCODED_SIZE];
    stored_model(&m, enc);
    static const char *const names[] = {"v", "temp.c", "2x"};
    const double vals[] = {30, 30, 30};

    cr_assert_eq(add_fields(&f, "k", 10000, 0, names, vals, 3, NULL), 0);
    cr_assert_eq(add_fields(&f, "k", 10100, 0, names, vals, 3, NULL), 0);
    cr_assert_eq(f.keys_new, 1, "once per new key");
    const uint8_t junk[3] = {1, 2, 3};
    struct sg_streams_stored_model stored[] = {
        {"v", 1, enc, sizeof(enc)},
        {"temp_c", 6, enc, sizeof(enc)},
        {"_2x", 3, enc, sizeof(enc)},
        {"w", 1, junk, sizeof(junk)}, /* not a model: skipped */
    };
    cr_assert_eq(sg_streams_restore(f.st, "k", 1, stored, SG_ARRAY_SIZE(stored)), 3);
    cr_assert_eq(sg_streams_restore(f.st, "k", 1, stored, 1), -ENOENT, "only once");
    cr_assert_eq(sg_streams_restore(f.st, "nokey", 5, stored, 1), -ENOENT);
    sg_streams_flush(f.st);
    cr_assert_eq(f.nres, 1);
    cJSON *root = parse(f.res[0].json);
    for (size_t i = 0; i < SG_ARRAY_SIZE(names); i++) {
        const cJSON *v = field_of(root, names[i]);
        /* Window 10, one step after the stored model's last. */
        cr_expect(close_rel(num(v, "forecast"), m.level + m.trend, 1e-6), "%s: %s", names[i],
                  f.res[0].json);
        cr_expect(cJSON_IsNumber(member(v, "anomaly")), "%s: scored at once: %s", names[i],
                  f.res[0].json);
    }
    cJSON_Delete(root);
    cr_expect_eq(
        sg_metrics_counter_value(f.metrics, SG_METRIC_PREDICT_RESTORES_TOTAL, "outcome=\"late\""),
        0);

    /* Too late: the key's first window fired before its models came. */
    fx_clear(&f);
    cr_assert_eq(add(&f, "j", 20000, 0, 5), 0);
    cr_assert_eq(add(&f, "j", 21000, 0, 5), 0); /* fires window 20 */
    cr_assert_eq(f.nres, 1);
    cr_expect_eq(
        sg_metrics_counter_value(f.metrics, SG_METRIC_PREDICT_RESTORES_TOTAL, "outcome=\"late\""),
        1);
    cr_assert_eq(sg_streams_restore(f.st, "j", 1, stored, 1), -ENOENT);
    cJSON *late = parse(f.res[0].json);
    cr_expect(cJSON_IsNull(member(field_of(late, "v"), "forecast")), "started afresh: %s",
              f.res[0].json);
    cJSON_Delete(late);
    /* No models stored: the key waits no more, and goes on afresh. */
    cr_assert_eq(add(&f, "n", 22000, 0, 5), 0);
    cr_assert_eq(sg_streams_restore(f.st, "n", 1, NULL, 0), 0);
    cr_assert_eq(f.keys_new, 3);
    fx_stop(&f);
}

/* predict.season through the engine: no forecast in the first two seasons, then the cycle's
 * terms in every forecast (a season of 4 with terms 2, 0, -2, 0 on the line 10 + t). */
Test(predict, seasons_in_results)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    set_opt(&f, "predict.season", "4");
    fx_start(&f);
    static const double terms[4] = {2, 0, -2, 0};
    for (int t = 0; t < 12; t++)
        cr_assert_eq(add(&f, "k", t * 1000, 0, 10 + t + terms[t % 4]), 0);
    cr_assert_eq(f.nres, 11); /* the 12th is open */
    for (int t = 0; t < 11; t++) {
        cJSON *root = parse(f.res[t].json);
        const cJSON *forecast = member(field_of(root, "v"), "forecast");
        if (t < 8)
            cr_expect(cJSON_IsNull(forecast), "window %d: %s", t, f.res[t].json);
        else /* exact: the start found the line and the terms */
            cr_expect(close_rel(forecast->valuedouble, 10 + t + terms[t % 4], 1e-6),
                      "window %d: %s", t, f.res[t].json);
        cJSON_Delete(root);
    }
    struct sg_buf b;
    sg_buf_init(&b, 1 << 16);
    cr_assert_eq(sg_streams_render_key(f.st, "k", 1, &b), 0);
    cJSON *live = cJSON_ParseWithLength(b.data, b.len);
    cr_assert_not_null(live);
    cr_expect(close_rel(num(member(live, "forecast"), "v"), 10 + 11 + terms[3], 1e-6), "%.*s",
              (int)b.len, b.data);
    cJSON_Delete(live);
    sg_buf_free(&b);
    fx_stop(&f);
}

/* A restored model that folded a window in already (its stored row came from a later window
 * than the one an aggregator rebuilds) does not fold it in again. */
Test(predict, a_window_the_restored_model_has_is_not_folded_twice)
{
    struct fx f;
    fx_init(&f, SG_WINDOW_TUMBLING, 1000);
    f.restore = true;
    fx_start(&f);
    struct sg_predict_model m;
    uint8_t enc[SG_PREDICT_ENCODED_SIZE];
    stored_model(&m, enc); /* windows 0..9 folded in */
    cr_assert_eq(add(&f, "k", 8000, 0, 50), 0);
    struct sg_streams_stored_model stored[] = {{"v", 1, enc, sizeof(enc)}};
    cr_assert_eq(sg_streams_restore(f.st, "k", 1, stored, 1), 1);
    cr_assert_eq(add(&f, "k", 10000, 0, 30), 0); /* fires window 8: already in the model */
    cr_assert_eq(add(&f, "k", 11000, 0, 30), 0); /* fires window 10: the model's next */
    cr_assert_eq(f.nres, 2);
    cJSON *root = parse(f.res[1].json);
    cr_expect(close_rel(num(field_of(root, "v"), "forecast"), m.level + m.trend, 1e-6),
              "window 10 forecast by the stored model, unmoved by window 8: %s", f.res[1].json);
    cJSON_Delete(root);
    fx_stop(&f);
}
