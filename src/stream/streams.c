/* The streams engine: the key table (open addressing with linear probing, grown at 3/4 load,
 * deletion by backward shift so no tombstones accumulate under churn), the interned field
 * names, the FIFO of idle keys and their eviction, the entry points that route events and
 * time to the windows (window.c), and the live query.
 *
 * Nothing here is allocated per event once a key and its window exist: an event costs a hash,
 * a probe, one name lookup per field and the folds. */
#include "streamgate/streams.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stream_internal.h"
#include "streamgate/common.h"
#include "streamgate/config.h"
#include "streamgate/ddsketch.h"
#include "streamgate/hash.h"

/* Fields of a window that sg_streams_prefetch_window brings in, whatever the event carries
 * (it is not decoded yet): the first few. */
#define SG_STREAMS_PREFETCH_FIELDS 4

/* ---- idle keys --------------------------------------------------------------------- */

void sg_streams__make_idle(struct sg_streams *st, struct sg_stream *s)
{
    s->is_idle = true;
    s->u.idle.since = st->now_ms;
    s->u.idle.next = NULL;
    s->u.idle.prev = st->idle_tail;
    if (st->idle_tail)
        st->idle_tail->u.idle.next = s;
    else
        st->idle_head = s;
    st->idle_tail = s;
}

void sg_streams__make_active(struct sg_streams *st, struct sg_stream *s)
{
    if (s->u.idle.prev)
        s->u.idle.prev->u.idle.next = s->u.idle.next;
    else
        st->idle_head = s->u.idle.next;
    if (s->u.idle.next)
        s->u.idle.next->u.idle.prev = s->u.idle.prev;
    else
        st->idle_tail = s->u.idle.prev;
    s->is_idle = false;
    s->u.windows = NULL;
    s->u.last = NULL;
}

void sg_streams__oom(struct sg_streams *st, const char *what)
{
    if (!st->log)
        return;
    int64_t suppressed = sg_log_limiter_take(&st->oom_limiter, st->now_ms);
    if (suppressed >= 0)
        sg_error(st->log, "streams: out of memory or over a size cap", SG_F_STR("what", what),
                 SG_F_INT("suppressed", suppressed));
}

/* ---- key table --------------------------------------------------------------------- */

static size_t sg_streams__stream_size(size_t key_len)
{
    return offsetof(struct sg_stream, key) + key_len;
}

/* What a stream costs the heap, as charged. */
static size_t sg_streams__stream_bytes(size_t key_len)
{
    return sg_heap_bytes(sg_streams__stream_size(key_len));
}

/* The top 16 bits of a key's hash, kept beside its slot: a probe compares them before it
 * reads the stream, which is a cache miss of its own with many keys. The slot index comes from
 * the low bits, so the two are independent. */
static inline uint16_t sg_streams__tag(uint64_t hash)
{
    return (uint16_t)(hash >> 48);
}

/* One allocation: nslots stream pointers, then their tags. */
static size_t sg_streams__table_bytes(size_t nslots)
{
    return nslots * (sizeof(struct sg_stream *) + sizeof(uint16_t));
}

static struct sg_stream *sg_streams__find(const struct sg_streams *st, const char *key, size_t len,
                                          uint64_t hash)
{
    uint16_t tag = sg_streams__tag(hash);
    for (size_t i = hash & st->mask;; i = (i + 1) & st->mask) {
        struct sg_stream *s = st->slots[i];
        if (!s)
            return NULL;
        if (st->tags[i] == tag && s->hash == hash && s->key_len == len &&
            sg_bytes_equal(s->key, key, len))
            return s;
    }
}

static void sg_streams__place(struct sg_stream **slots, uint16_t *tags, size_t mask,
                              struct sg_stream *s)
{
    size_t i = s->hash & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = s;
    tags[i] = sg_streams__tag(s->hash);
}

/* Rebuilds the table with `nslots` slots (a power of two above the key count). */
static int sg_streams__resize(struct sg_streams *st, size_t nslots)
{
    struct sg_stream **slots = calloc(1, sg_streams__table_bytes(nslots));
    if (!slots)
        return -ENOMEM;
    uint16_t *tags = (uint16_t *)(void *)(slots + nslots);
    for (size_t i = 0; i <= st->mask; i++)
        if (st->slots[i])
            sg_streams__place(slots, tags, nslots - 1, st->slots[i]);
    st->mem_bytes += sg_streams__table_bytes(nslots);
    st->mem_bytes -= sg_streams__table_bytes(st->mask + 1);
    free(st->slots);
    st->slots = slots;
    st->tags = tags;
    st->mask = nslots - 1;
    return 0;
}

/* Bytes of a model's seasonal array (predict.season). */
static size_t sg_streams__season_bytes(const struct sg_streams *st)
{
    return SG_PREDICT_SEASON_SLOTS(st->predict_conf.season) * sizeof(double);
}

/* Frees a stream's models; returns the bytes they held. */
static size_t sg_streams__free_models(const struct sg_streams *st, struct sg_stream *s)
{
    size_t bytes = s->nmodels * sizeof(*s->models);
    for (unsigned i = 0; i < s->nmodels; i++)
        if (s->models[i].season) {
            free(s->models[i].season);
            bytes += sg_streams__season_bytes(st);
        }
    free(s->models);
    return bytes;
}

/* A new stream for `key`, in the table, with no window yet. NULL when out of memory. */
static struct sg_stream *sg_streams__insert(struct sg_streams *st, const char *key, size_t len,
                                            uint64_t hash, int32_t partition)
{
    size_t nslots = st->mask + 1;
    if ((st->nkeys + 1) * 4 > nslots * 3) {
        if (nslots > SIZE_MAX / 4 / sg_streams__table_bytes(1) ||
            sg_streams__resize(st, nslots * 2))
            return NULL;
    }
    struct sg_stream *s = malloc(sg_streams__stream_size(len));
    if (!s)
        return NULL;
    st->mem_bytes += sg_streams__stream_bytes(len);
    s->hash = hash;
    s->u.windows = NULL;
    s->u.last = NULL;
    s->models = NULL;
    s->nmodels = 0;
    s->partition = partition >= 0 ? partition : sg_kafka_partition(key, len, st->partitions);
    s->key_len = (uint32_t)len;
    s->is_idle = false;
    s->restore_pending = false;
    memcpy(s->key, key, len);
    sg_streams__place(st->slots, st->tags, st->mask, s);
    st->nkeys++;
    sg_gauge_set(st->keys_active, (double)st->nkeys);
    return s;
}

/* Takes a stream out of the table, shifting the entries after it back so every probe
 * sequence stays unbroken, and frees it. */
static void sg_streams__remove(struct sg_streams *st, struct sg_stream *s)
{
    size_t i = s->hash & st->mask;
    while (st->slots[i] != s)
        i = (i + 1) & st->mask;
    st->slots[i] = NULL;
    for (size_t j = (i + 1) & st->mask; st->slots[j]; j = (j + 1) & st->mask) {
        size_t home = st->slots[j]->hash & st->mask;
        /* The entry at j may fill the hole at i unless its home lies after i, up to j. */
        if (((j - home) & st->mask) >= ((j - i) & st->mask)) {
            st->slots[i] = st->slots[j];
            st->tags[i] = st->tags[j];
            st->slots[j] = NULL;
            i = j;
        }
    }
    st->mem_bytes -= sg_streams__stream_bytes(s->key_len) + sg_streams__free_models(st, s);
    free(s);
    st->nkeys--;
    sg_gauge_set(st->keys_active, (double)st->nkeys);
}

/* Evicts the keys idle for stream.key_idle_timeout, oldest first, then shrinks a table that
 * has become mostly empty. */
static void sg_streams__evict(struct sg_streams *st)
{
    bool evicted = false;
    while (st->idle_head && st->idle_head->u.idle.since + st->key_idle_timeout_ms <= st->now_ms) {
        struct sg_stream *s = st->idle_head;
        sg_streams__make_active(st, s); /* off the FIFO */
        sg_streams__remove(st, s);
        sg_counter_inc(st->keys_evicted);
        evicted = true;
    }
    size_t nslots = st->mask + 1;
    if (evicted && nslots > SG_STREAMS_MIN_SLOTS && st->nkeys * 8 < nslots) {
        while (nslots / 2 >= SG_STREAMS_MIN_SLOTS && st->nkeys * 2 <= nslots / 2)
            nslots /= 2;
        (void)sg_streams__resize(st, nslots); /* a failure only leaves the table larger */
    }
}

/* ---- field names ------------------------------------------------------------------- */

/* Whether predict.fields names the field (or is empty). */
static bool sg_streams__predicted(const struct sg_streams *st, const char *name)
{
    for (size_t i = 0; i < st->npredict_fields; i++)
        if (strcmp(st->predict_fields[i], name) == 0)
            return true;
    return st->npredict_fields == 0;
}

struct sg_predict_model *sg_streams__model(struct sg_streams *st, struct sg_stream *s, uint32_t id)
{
    for (unsigned i = 0; i < s->nmodels; i++)
        if (s->models[i].field == id)
            return &s->models[i];
    if (s->nmodels >= st->max_fields) {
        sg_counter_inc(st->predict_fields_hits);
        return NULL;
    }
    double *season = NULL;
    if (st->predict_conf.season) {
        season = malloc(sg_streams__season_bytes(st));
        if (!season) {
            sg_streams__oom(st, "forecast model");
            return NULL;
        }
    }
    struct sg_predict_model *m = realloc(s->models, (s->nmodels + 1u) * sizeof(*m));
    if (!m) {
        free(season);
        sg_streams__oom(st, "forecast model");
        return NULL;
    }
    s->models = m;
    st->mem_bytes += sizeof(*m) + (season ? sg_streams__season_bytes(st) : 0);
    m += s->nmodels++;
    sg_predict_init(m, id, season);
    return m;
}

/* The id of a field name, interning it when new; UINT32_MAX (counted) when the name is too
 * long or the table is full. `pos` is the field's position in its event: the id found there
 * last time is tried first. */
static uint32_t sg_streams__intern(struct sg_streams *st, size_t pos, const char *name, size_t len)
{
    uint32_t id = st->last_ids[pos];
    if (id < st->nnames && st->name_lens[id] == len && sg_bytes_equal(st->names[id], name, len))
        return id;
    if (len > SG_STREAMS_MAX_NAME_LEN)
        goto dropped;
    uint64_t h = sg_hash64(name, len, st->seed);
    size_t i = h & (SG_STREAMS_NAME_SLOTS - 1);
    for (; st->name_slots[i]; i = (i + 1) & (SG_STREAMS_NAME_SLOTS - 1)) {
        id = st->name_slots[i] - 1u;
        if (st->name_hashes[id] == (uint32_t)h && st->name_lens[id] == len &&
            sg_bytes_equal(st->names[id], name, len))
            goto found;
    }
    if (st->nnames >= SG_STREAMS_MAX_NAMES)
        goto dropped;
    char *copy = malloc(len + 1);
    if (!copy) {
        sg_streams__oom(st, "field name");
        goto dropped;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    st->mem_bytes += len + 1;
    id = st->nnames++;
    st->names[id] = copy;
    st->name_predicted[id] = st->predict && sg_streams__predicted(st, copy);
    st->name_hashes[id] = (uint32_t)h;
    st->name_lens[id] = (uint16_t)len;
    st->name_slots[i] = (uint16_t)(id + 1);
found:
    st->last_ids[pos] = id;
    return id;
dropped:
    sg_counter_inc(st->names_dropped);
    return UINT32_MAX;
}

/* ---- stored models ------------------------------------------------------------------ */

static inline void sg_streams__sync(struct sg_streams *st);

/* Whether a field's name, spelled as the Tablestore writer spells a column's prefix (ASCII
 * letters and digits kept, anything else `_`, a `_` before a leading digit), is `column`. */
static bool sg_streams__column_is(const char *name, size_t len, const char *column,
                                  size_t column_len)
{
    size_t lead = len && isdigit((unsigned char)name[0]) ? 1 : 0;
    if (column_len != len + lead || (lead && column[0] != '_'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = isalnum((unsigned char)name[i]) ? name[i] : '_';
        if (column[lead + i] != c)
            return false;
    }
    return true;
}

/* The id of the field a stored model's column names: a field seen already whose name the
 * column spells, else the column's name itself (a field the key has not sent yet, whose name
 * needed no respelling). UINT32_MAX when the name table is full. */
static uint32_t sg_streams__column_field(struct sg_streams *st, const char *column, size_t len)
{
    for (uint32_t id = 0; id < st->nnames; id++)
        if (sg_streams__column_is(st->names[id], st->name_lens[id], column, len))
            return id;
    uint32_t hint = st->last_ids[0];
    uint32_t id = sg_streams__intern(st, 0, column, len);
    st->last_ids[0] = hint;
    return id;
}

int sg_streams_restore(struct sg_streams *st, const char *key, size_t key_len,
                       const struct sg_streams_stored_model *models, size_t n)
{
    struct sg_stream *s = sg_streams__find(st, key, key_len, sg_hash64(key, key_len, st->seed));
    if (!s || !s->restore_pending)
        return -ENOENT;
    s->restore_pending = false;
    int applied = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = sg_streams__column_field(st, models[i].column, models[i].column_len);
        if (id == UINT32_MAX || !st->name_predicted[id])
            continue;
        struct sg_predict_model *m = sg_streams__model(st, s, id);
        /* A model that folded a window in here already (none has: the stream waited) wins. */
        if (m && m->n == 0 &&
            sg_predict_decode(&st->predict_conf, m, models[i].model, models[i].len) == 0)
            applied++;
    }
    sg_streams__sync(st);
    return applied;
}

/* ---- create / destroy -------------------------------------------------------------- */

static uint64_t sg_streams__random_seed(const void *salt)
{
    uint64_t seed = 0;
    /* A per-process random seed keeps keys chosen by a client from piling into one probe
     * run; without entropy, the clock and an address still differ from run to run. */
    if (getentropy(&seed, sizeof(seed)) != 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt;
    }
    return seed;
}

static int sg_streams__register(struct sg_streams *st, struct sg_metrics *m)
{
    if (!m) {
        st->keys_active = &st->own_gauges[0];
        st->windows_open_gauge = &st->own_gauges[1];
        st->watermark_lag = &st->own_gauges[2];
        st->windows_waiting = &st->own_gauges[3];
        st->waiting_age = &st->own_gauges[4];
        st->windows_fired = &st->own_counters[0];
        st->window_updates = &st->own_counters[1];
        st->late_events = &st->own_counters[2];
        st->keys_evicted = &st->own_counters[3];
        st->names_dropped = &st->own_counters[4];
        st->firing_stalls = &st->own_counters[5];
        st->streams_memory_hits = &st->own_counters[6];
        st->anomalies = &st->own_counters[7];
        st->predict_fields_hits = &st->own_counters[8];
        st->restores_late = &st->own_counters[9];
        return 0;
    }
    st->keys_active = sg_metrics_gauge(m, SG_METRIC_KEYS_ACTIVE, NULL);
    st->windows_open_gauge = sg_metrics_gauge(m, SG_METRIC_WINDOWS_OPEN, NULL);
    st->watermark_lag = sg_metrics_gauge(m, SG_METRIC_WATERMARK_LAG_SECONDS, NULL);
    st->windows_fired = sg_metrics_counter(m, SG_METRIC_WINDOWS_FIRED_TOTAL, NULL);
    st->window_updates = sg_metrics_counter(m, SG_METRIC_WINDOW_UPDATES_TOTAL, NULL);
    st->late_events = sg_metrics_counter(m, SG_METRIC_LATE_EVENTS_TOTAL, NULL);
    st->keys_evicted = sg_metrics_counter(m, SG_METRIC_KEYS_EVICTED_TOTAL, NULL);
    st->names_dropped = sg_metrics_counter(m, SG_METRIC_FIELD_NAMES_DROPPED_TOTAL, NULL);
    st->windows_waiting = sg_metrics_gauge(m, SG_METRIC_WINDOWS_WAITING, NULL);
    st->waiting_age = sg_metrics_gauge(m, SG_METRIC_WINDOWS_WAITING_AGE_SECONDS, NULL);
    st->firing_stalls = sg_metrics_counter(m, SG_METRIC_WINDOW_FIRING_STALLS_TOTAL, NULL);
    st->streams_memory_hits =
        sg_metrics_counter(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"streams_memory\"");
    st->anomalies = sg_metrics_counter(m, SG_METRIC_ANOMALIES_TOTAL, NULL);
    st->predict_fields_hits =
        sg_metrics_counter(m, SG_METRIC_LIMIT_HITS_TOTAL, "limit=\"predict_fields\"");
    st->restores_late = sg_metrics_counter(m, SG_METRIC_PREDICT_RESTORES_TOTAL, "outcome=\"late\"");
    if (!st->keys_active || !st->windows_open_gauge || !st->watermark_lag || !st->windows_fired ||
        !st->window_updates || !st->late_events || !st->keys_evicted || !st->names_dropped ||
        !st->windows_waiting || !st->waiting_age || !st->firing_stalls ||
        !st->streams_memory_hits || !st->anomalies || !st->predict_fields_hits ||
        !st->restores_late)
        return -ENOMEM;
    return 0;
}

/* Charges the engine's bytes to the budget, or keeps the account without one. */
static void sg_streams__charge(struct sg_streams *st)
{
    if (st->budget)
        sg_budget_set(st->budget, SG_BUDGET_STREAMS, &st->budget_held, st->mem_bytes);
    else
        st->budget_held = st->mem_bytes;
}

/* Brings the budget up to date when the engine's bytes changed: one compare otherwise. */
static inline void sg_streams__sync(struct sg_streams *st)
{
    if (st->mem_bytes != st->budget_held)
        sg_streams__charge(st);
}

/* Bytes to keep free for the keys already taken: one window more each. A key that reports in
 * every window opens its next one while the last still waits for the watermark (its end, plus
 * the allowed lateness, or the writers), so the keys taken need that room at every window
 * boundary; without it stream state taken up to the share grew past it there and paused
 * ingest on its own. A key's room is the engine's bytes per open window (its window and its
 * share of the keys and tables, a margin kept on purpose), but never more than a key's share
 * of the engine plus an average window: with few windows open among many keys (the others
 * fired, their keys not yet idle long enough to go), bytes per open window would reckon each
 * key at the whole engine.
 *
 * Open windows are young, though: a window's sketches come with its third value and grow with
 * the values after it, so early in a window the open ones weigh less than they will when they
 * end. A key that reports all the time also comes to hold every window the allowed lateness
 * keeps open (window.size plus the lateness, over window.slide, of them), and one more at a
 * boundary or while due windows wait for the writers. So each key is reckoned at that many
 * windows of what windows held when they ended, less what it holds now. With 200,000 keys
 * reporting about twice a window, reckoning the young windows alone let stream state grow from
 * its share to the high watermark by itself, and the pause that followed could only end with
 * the watermark moving on, which made the events held back by it late; with a 30 s lateness
 * (four windows a key) reckoning two windows a key did the same. Before the first window ends
 * (for as long as the lateness), the open windows' average stands in for the ended ones'. */
/* Most windows a key is reckoned to hold at once (sg_streams__windows_held). */
#define SG_STREAMS_MAX_HELD 4.0

/* Windows a key that reports all the time holds at once: those whose end plus the allowed
 * lateness the watermark has not passed (a session, and the one before it while it waits). */
static double sg_streams__windows_held(const struct sg_streams *st)
{
    if (st->type == SG_WINDOW_SESSION)
        return st->lateness_ms > 0 ? 2 : 1;
    double held = ceil((double)(st->size_ms + st->lateness_ms) / (double)st->slide_ms);
    /* A lateness of many windows (an hour of 1 s windows) would reckon every key at thousands,
     * though only a key reporting in every one of them holds that many: past a few, the pause
     * on stream state covers the keys that do. */
    return held < SG_STREAMS_MAX_HELD ? held : SG_STREAMS_MAX_HELD;
}

static size_t sg_streams__key_reserve(const struct sg_streams *st)
{
    if (st->windows_open == 0 || st->nkeys == 0)
        return 0;
    double open_avg = (double)st->win_bytes / (double)st->windows_open;
    double per_window = (double)st->mem_bytes / (double)st->windows_open;
    double per_key = (double)st->mem_bytes / (double)st->nkeys + open_avg;
    double room = SG_MIN(per_window, per_key);
    /* Before any window has ended, the open ones are the only measure there is. */
    double ended = st->ended_win_bytes > 0 ? st->ended_win_bytes : open_avg;
    double grown =
        (sg_streams__windows_held(st) + 1) * ended - (double)st->win_bytes / (double)st->nkeys;
    if (grown > room)
        room = grown;
    return (size_t)(room * (double)st->nkeys);
}

/* Percent of a budget's limit, in bytes. */
static size_t sg_streams__share(const struct sg_budget *budget, int64_t pct)
{
    return (size_t)((double)sg_budget_limit(budget) * (double)pct / 100.0);
}

void sg_streams_set_shares(struct sg_streams *st, const struct sg_config *cfg)
{
    st->streams_limit = SIZE_MAX;
    st->results_limit = SIZE_MAX;
    if (!st->budget)
        return;
    st->streams_limit = sg_streams__share(st->budget, cfg->limits_streams_share);
    st->results_limit = sg_streams__share(st->budget, cfg->limits_results_share);
}

static int64_t sg_streams__ms(uint64_t v)
{
    return v > (uint64_t)SG_STREAMS_MAX_TIME ? SG_STREAMS_MAX_TIME : (int64_t)v;
}

/* predict.*, from a validated configuration (a number that does not parse keeps its default's
 * value). Returns 0 or -ENOMEM. */
static int sg_streams__predict_setup(struct sg_streams *st, const struct sg_config *cfg)
{
    struct sg_predict_conf *c = &st->predict_conf;
    *c = (struct sg_predict_conf){.alpha = 0.1, .beta = 0.02, .threshold = 3.5, .warmup = 5};
    st->predict = cfg->predict_enabled;
    if (cfg->predict_alpha)
        (void)sg_parse_real(cfg->predict_alpha, 0, 1, &c->alpha);
    if (cfg->predict_beta)
        (void)sg_parse_real(cfg->predict_beta, 0, 1, &c->beta);
    if (cfg->predict_anomaly_threshold)
        (void)sg_parse_real(cfg->predict_anomaly_threshold, 0, 1e6, &c->threshold);
    if (cfg->predict_warmup >= 3)
        c->warmup = cfg->predict_warmup > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->predict_warmup;
    if (cfg->predict_season >= 2 && cfg->predict_season <= SG_PREDICT_MAX_SEASON) {
        c->season = (uint32_t)cfg->predict_season;
        c->gamma = 0.1;
        if (cfg->predict_gamma)
            (void)sg_parse_real(cfg->predict_gamma, 0, 1, &c->gamma);
    }
    size_t n = cfg->predict_fields.count;
    if (n == 0)
        return 0;
    st->predict_fields = calloc(n, sizeof(*st->predict_fields));
    if (!st->predict_fields)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        st->predict_fields[i] = strdup(cfg->predict_fields.items[i]);
        if (!st->predict_fields[i])
            return -ENOMEM;
        st->npredict_fields++;
        st->mem_bytes += strlen(st->predict_fields[i]) + 1;
    }
    return 0;
}

struct sg_streams *sg_streams_create(const struct sg_config *cfg, struct sg_metrics *metrics,
                                     struct sg_log *log, struct sg_budget *budget,
                                     const struct sg_streams_callbacks *cbs)
{
    struct sg_streams *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;

    /* The configuration was validated; the clamps only keep the arithmetic well defined. */
    st->type = cfg->window_type;
    st->time_mode = cfg->window_time;
    st->size_ms = sg_streams__ms(cfg->window_size_ms);
    if (st->size_ms < 1)
        st->size_ms = 1;
    st->slide_ms = st->size_ms;
    if (st->type == SG_WINDOW_HOPPING && cfg->window_slide_ms > 0 &&
        sg_streams__ms(cfg->window_slide_ms) < st->size_ms)
        st->slide_ms = sg_streams__ms(cfg->window_slide_ms);
    st->gap_ms = sg_streams__ms(cfg->window_gap_ms);
    if (st->gap_ms < 1)
        st->gap_ms = 1;
    st->lateness_ms = sg_streams__ms(cfg->window_allowed_lateness_ms);
    st->idle_timeout_ms = sg_streams__ms(cfg->window_idle_timeout_ms);
    st->emit_interval_ms = sg_streams__ms(cfg->window_emit_interval_ms);
    st->max_keys = cfg->stream_max_keys;
    st->key_idle_timeout_ms = sg_streams__ms(cfg->stream_key_idle_timeout_ms);
    st->partitions = cfg->stream_partitions > 0 && cfg->stream_partitions <= INT32_MAX
                         ? (int32_t)cfg->stream_partitions
                         : 1;
    st->max_fields =
        (uint8_t)(cfg->event_max_fields < 0                     ? 0
                  : cfg->event_max_fields > SG_EVENT_MAX_FIELDS ? SG_EVENT_MAX_FIELDS
                                                                : cfg->event_max_fields);
    st->distinct = cfg->window_distinct_field && cfg->window_distinct_field[0] != '\0';
    int64_t p = cfg->window_distinct_precision;
    st->distinct_precision = (uint8_t)(p < SG_HLL_MIN_PRECISION   ? SG_HLL_MIN_PRECISION
                                       : p > SG_HLL_MAX_PRECISION ? SG_HLL_MAX_PRECISION
                                                                  : p);
    st->field_off = sizeof(struct sg_window) + (st->distinct ? sizeof(struct sg_hll) : 0);
    if (cfg->role == SG_ROLE_AGGREGATOR) {
        st->origin_off = st->field_off;
        st->field_off += sizeof(struct sg_streams_origin);
    }
    st->field_stride = sizeof(struct sg_wfield);
    size_t window_bytes =
        st->field_off + st->field_stride + (st->distinct ? (size_t)1 << st->distinct_precision : 0);
    /* Freed windows kept for reuse count against the budget too: a small part of it. */
    size_t free_bytes = SG_STREAMS_FREE_BYTES;
    if (budget && sg_budget_limit(budget) / 64 < free_bytes)
        free_bytes = sg_budget_limit(budget) / 64;
    st->free_max = free_bytes / window_bytes;

    st->log = log;
    st->oom_limiter.interval_ms = 10000;
    st->late_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    st->key_limit_limiter.interval_ms = (int64_t)cfg->log_bad_input_interval_ms;
    if (cbs)
        st->cbs = *cbs;
    st->budget = budget;
    sg_streams_set_shares(st, cfg);
    /* Pacing holds results back for writers; without a result callback there are none. */
    st->paced = budget && st->cbs.result != NULL;
    st->seed = sg_streams__random_seed(st);
    st->origin = (struct sg_streams_origin){
        .offset = -1, .watermark = INT64_MIN, .max_event_time = INT64_MIN};
    st->parts_checked_ms = INT64_MIN;
    sg_buf_init(&st->out, SG_STREAMS_RESULT_MAX);

    st->slots = calloc(1, sg_streams__table_bytes(SG_STREAMS_MIN_SLOTS));
    if (st->slots)
        st->tags = (uint16_t *)(void *)(st->slots + SG_STREAMS_MIN_SLOTS);
    st->names = calloc(SG_STREAMS_MAX_NAMES, sizeof(*st->names));
    st->name_hashes = calloc(SG_STREAMS_MAX_NAMES, sizeof(*st->name_hashes));
    st->name_lens = calloc(SG_STREAMS_MAX_NAMES, sizeof(*st->name_lens));
    st->name_slots = calloc(SG_STREAMS_NAME_SLOTS, sizeof(*st->name_slots));
    st->name_predicted = calloc(SG_STREAMS_MAX_NAMES, sizeof(*st->name_predicted));
    size_t nq = cfg->window_quantiles.count;
    if (nq > 0) {
        st->quantiles = calloc(nq, sizeof(*st->quantiles));
        st->quantile_names = calloc(nq, sizeof(*st->quantile_names));
    }
    if (!st->slots || !st->names || !st->name_hashes || !st->name_lens || !st->name_slots ||
        !st->name_predicted || sg_streams__predict_setup(st, cfg) != 0 ||
        (nq > 0 && (!st->quantiles || !st->quantile_names)) ||
        sg_streams__register(st, metrics) != 0) {
        sg_streams_destroy(st);
        return NULL;
    }
    st->mask = SG_STREAMS_MIN_SLOTS - 1;
    st->mem_bytes += sizeof(*st) + sg_streams__table_bytes(SG_STREAMS_MIN_SLOTS) +
                     SG_STREAMS_MAX_NAMES * (sizeof(*st->names) + sizeof(*st->name_hashes) +
                                             sizeof(*st->name_lens) + sizeof(*st->name_predicted)) +
                     SG_STREAMS_NAME_SLOTS * sizeof(*st->name_slots);
    for (size_t i = 0; i < nq; i++) {
        double q;
        /* Validation rejects bad names; one that slips through is left out, not guessed. */
        if (sg_parse_quantile(cfg->window_quantiles.items[i], &q) != 0)
            continue;
        char *name = strdup(cfg->window_quantiles.items[i]);
        if (!name) {
            sg_streams_destroy(st);
            return NULL;
        }
        st->quantiles[st->nquantiles] = q;
        st->quantile_names[st->nquantiles++] = name;
    }
    sg_streams__charge(st);
    return st;
}

void sg_streams_destroy(struct sg_streams *st)
{
    if (!st)
        return;
    if (st->budget)
        sg_budget_set(st->budget, SG_BUDGET_STREAMS, &st->budget_held, 0);
    sg_window__free_all(st);
    if (st->slots)
        for (size_t i = 0; i <= st->mask; i++)
            if (st->slots[i]) {
                (void)sg_streams__free_models(st, st->slots[i]);
                free(st->slots[i]);
            }
    free(st->slots);
    if (st->names)
        for (uint32_t i = 0; i < st->nnames; i++)
            free(st->names[i]);
    free(st->names);
    free(st->name_hashes);
    free(st->name_lens);
    free(st->name_slots);
    free(st->name_predicted);
    for (size_t i = 0; i < st->npredict_fields; i++)
        free(st->predict_fields[i]);
    free(st->predict_fields);
    for (size_t i = 0; i < st->nquantiles; i++)
        free(st->quantile_names[i]);
    free(st->quantiles);
    free(st->quantile_names);
    sg_buf_free(&st->out);
    sg_result__release_rooms(st);
    free(st->view_fields);
    free(st->view_rooms);
    free(st->parts);
    free(st);
}

/* ---- time and events --------------------------------------------------------------- */

static void sg_streams__update_gauges(struct sg_streams *st)
{
    sg_gauge_set(st->windows_open_gauge, (double)st->windows_open);
    double lag = 0.0;
    if (st->time_mode == SG_TIME_EVENT && st->has_watermark)
        lag = (double)(st->now_ms - st->watermark) / 1000.0;
    sg_gauge_set(st->watermark_lag, lag);
}

/* A new key refused because the engine holds its share of the memory budget: counted, and
 * logged at most once per log.bad_input_interval. */
static void sg_streams__refuse_key(struct sg_streams *st)
{
    sg_counter_inc(st->streams_memory_hits);
    if (!st->log || SG_LOG_WARN < st->log->level)
        return;
    int64_t suppressed = sg_log_limiter_take(&st->key_limit_limiter, st->now_ms);
    if (suppressed >= 0)
        sg_warn(st->log,
                "new keys refused: stream state holds limits.streams_share of the budget, with "
                "room for the next windows of its keys",
                SG_F_UINT("streams_bytes", st->mem_bytes),
                SG_F_UINT("streams_limit", st->streams_limit),
                SG_F_UINT("reserved_bytes", sg_streams__key_reserve(st)),
                SG_F_UINT("keys", st->nkeys), SG_F_INT("suppressed", suppressed));
}

/* An event of partition `p` (NULL outside an aggregator) takes its time into that partition's
 * watermark, and the engine's watermark follows. */
static void sg_streams__observe(struct sg_streams *st, struct sg_streams_part *p, int64_t t,
                                int64_t now_ms)
{
    if (!p) {
        sg_window__observe(st, t, now_ms);
        return;
    }
    if (st->time_mode == SG_TIME_PROCESSING)
        return;
    st->last_event_wall = now_ms;
    p->last_wall = now_ms;
    if (!p->known) {
        p->known = true;
        p->max_event_time = t;
        p->watermark = t - st->lateness_ms;
    } else if (t > p->max_event_time) {
        p->max_event_time = t;
        if (t - st->lateness_ms > p->watermark)
            p->watermark = t - st->lateness_ms;
    } else {
        return;
    }
    sg_window__part_watermark(st);
}

static int sg_streams__add(struct sg_streams *st, const struct sg_event *ev,
                           struct sg_streams_part *p, int32_t partition, int64_t now_ms,
                           enum sg_reject *why)
{
    uint32_t ids[SG_EVENT_MAX_FIELDS];
    uint64_t dhash, *distinct_hash = NULL;
    int rc = 0;

    /* Time first, as a tick would: what is due fires and idle keys go before the event is
     * placed, so a freed key slot is available to it. */
    sg_window__advance(st, now_ms);
    bool held = sg_window__fire_due(st);
    sg_streams__evict(st);

    int64_t t = ev->ts_ms;
    if (st->time_mode == SG_TIME_PROCESSING)
        t = st->watermark; /* the wall clock, never behind an earlier event's time */
    else if (t > SG_STREAMS_MAX_TIME)
        t = SG_STREAMS_MAX_TIME;
    else if (t < -SG_STREAMS_MAX_TIME)
        t = -SG_STREAMS_MAX_TIME;

    /* In an aggregator, lateness is the partition's: its watermark stands in for the engine's
     * while the event is placed (global_* keep the engine's, for firing). */
    int64_t global_wm = st->watermark;
    bool global_has = st->has_watermark;
    if (p && st->time_mode == SG_TIME_EVENT) {
        st->watermark = p->watermark;
        st->has_watermark = p->known;
    }

    uint64_t hash = sg_hash64(ev->key, ev->key_len, st->seed);
    struct sg_stream *s = sg_streams__find(st, ev->key, ev->key_len, hash);
    if (!s) {
        int64_t end;
        if (sg_window__all_late(st, t, &end)) {
            /* Too late for any window: no stream is made for it. */
            if (p && st->time_mode == SG_TIME_EVENT) {
                st->watermark = global_wm;
                st->has_watermark = global_has;
            }
            sg_streams__observe(st, p, t, now_ms);
            sg_window__late(st, ev, end);
            goto out;
        }
        if (st->nkeys >= (uint64_t)st->max_keys) {
            rc = -EINVAL;
            goto restore;
        }
        if (st->streams_limit != SIZE_MAX &&
            st->mem_bytes + sg_streams__key_reserve(st) >= st->streams_limit) {
            sg_streams__refuse_key(st);
            rc = -EINVAL;
            goto restore;
        }
    }
    if (p && st->time_mode == SG_TIME_EVENT) {
        st->watermark = global_wm;
        st->has_watermark = global_has;
    }

    size_t n = ev->nfields < SG_EVENT_MAX_FIELDS ? ev->nfields : SG_EVENT_MAX_FIELDS;
    for (size_t i = 0; i < n; i++)
        ids[i] = sg_streams__intern(st, i, ev->fields[i].name, ev->fields[i].name_len);
    if (st->distinct && ev->distinct) {
        dhash = sg_hash64(ev->distinct, ev->distinct_len, 0);
        distinct_hash = &dhash;
    }

    /* The event's own time may push the watermark past other windows' ends; never past its
     * own windows', so it cannot make itself late. When windows wait for the writers, what is
     * newly due waits behind them (the writers cannot have drained since): the pacing is
     * asked once per event. */
    sg_streams__observe(st, p, t, now_ms);
    if (!held)
        sg_window__fire_due(st);
    else
        sg_window__mark_due(st);

    if (!s) {
        s = sg_streams__insert(st, ev->key, ev->key_len, hash, partition);
        if (!s) {
            sg_streams__oom(st, "key");
            rc = -ENOMEM;
            goto out;
        }
        if (st->predict && st->cbs.key_new)
            s->restore_pending = st->cbs.key_new(st->cbs.arg, s->key, s->key_len);
    }
    if (p && st->time_mode == SG_TIME_EVENT) {
        global_wm = st->watermark;
        global_has = st->has_watermark;
        st->watermark = p->watermark;
        st->has_watermark = true;
        rc = sg_window__add(st, s, ev, t, ids, distinct_hash);
        goto restore;
    }
    rc = sg_window__add(st, s, ev, t, ids, distinct_hash);
    goto out;
restore:
    if (p && st->time_mode == SG_TIME_EVENT) {
        st->watermark = global_wm;
        st->has_watermark = global_has;
    }
out:
    sg_streams__update_gauges(st);
    sg_streams__sync(st);
    if (rc != 0)
        *why = rc == -EINVAL ? SG_REJECT_KEY_LIMIT : SG_REJECT_SINK_FAILED;
    return rc;
}

int sg_streams_add(struct sg_streams *st, const struct sg_event *ev, int64_t now_ms,
                   enum sg_reject *why)
{
    return sg_streams__add(st, ev, NULL, -1, now_ms, why);
}

uint64_t sg_streams_prefetch_slot(const struct sg_streams *st, const char *key, size_t key_len)
{
    uint64_t hash = sg_hash64(key, key_len, st->seed);
    __builtin_prefetch(&st->tags[hash & st->mask]);
    __builtin_prefetch(&st->slots[hash & st->mask]);
    return hash;
}

void sg_streams_prefetch_stream(const struct sg_streams *st, uint64_t hash)
{
    uint16_t tag = sg_streams__tag(hash);
    for (size_t i = hash & st->mask, n = 0; st->slots[i] && n < 4; i = (i + 1) & st->mask, n++) {
        if (st->tags[i] == tag) {
            __builtin_prefetch(st->slots[i]);
            return;
        }
    }
}

void sg_streams_prefetch_window(const struct sg_streams *st, const char *key, size_t key_len,
                                uint64_t hash)
{
    const struct sg_stream *s = sg_streams__find(st, key, key_len, hash);
    if (!s || s->is_idle || !s->u.windows)
        return;
    /* The window's header and its first fields (their sketches come next). */
    const char *w = (const char *)s->u.windows;
    size_t bytes =
        st->field_off + SG_MIN(SG_STREAMS_PREFETCH_FIELDS, st->max_fields) * st->field_stride;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(w + off, 1);
}

void sg_streams_prefetch_sketches(const struct sg_streams *st, const char *key, size_t key_len,
                                  uint64_t hash)
{
    const struct sg_stream *s = sg_streams__find(st, key, key_len, hash);
    if (!s || s->is_idle || !s->u.windows)
        return;
    const struct sg_window *w = s->u.windows;
    size_t n = SG_MIN((size_t)w->nfields, SG_STREAMS_PREFETCH_FIELDS);
    for (size_t i = 0; i < n; i++) {
        const struct sg_ddsketch *sk = sg_window__field_at(st, w, i)->agg.sketch;
        if (sk)
            __builtin_prefetch(sk, 1);
    }
}

int64_t sg_streams_tick(struct sg_streams *st, int64_t now_ms)
{
    sg_window__advance(st, now_ms);
    bool held = sg_window__fire_due(st);
    int64_t next = 1000;
    if (st->emit_interval_ms > 0) {
        if (!st->emit_armed) {
            st->emit_armed = true;
            st->next_emit_ms = now_ms + st->emit_interval_ms;
        } else if (now_ms >= st->next_emit_ms) {
            sg_window__emit_dirty(st);
            st->next_emit_ms += st->emit_interval_ms;
            if (st->next_emit_ms <= now_ms) /* the timer fell behind: do not burst */
                st->next_emit_ms = now_ms + st->emit_interval_ms;
        }
        if (st->next_emit_ms - now_ms < next)
            next = st->next_emit_ms - now_ms;
    }
    sg_streams__evict(st);
    if (st->idle_head) {
        int64_t due = st->idle_head->u.idle.since + st->key_idle_timeout_ms - now_ms;
        if (due < next)
            next = due;
    }
    /* Due windows waiting for the writers: look again soon, without spinning. Partitions idle
     * one by one, so a partitioned engine looks every SG_STREAMS_PART_POLL_MS. */
    int64_t due = held ? SG_STREAMS_PACE_POLL_MS : sg_window__next_due(st);
    if (st->partitioned && due > SG_STREAMS_PART_POLL_MS)
        due = SG_STREAMS_PART_POLL_MS;
    if (due < next)
        next = due;
    sg_window__update_waiting(st, false);
    sg_streams__update_gauges(st);
    sg_streams__sync(st);
    return next < 1 ? 1 : next;
}

void sg_streams_flush(struct sg_streams *st)
{
    sg_window__fire_all(st);
    sg_streams__update_gauges(st);
    sg_streams__sync(st);
}

/* ---- live query -------------------------------------------------------------------- */

int sg_streams_render_key(struct sg_streams *st, const char *key, size_t key_len,
                          struct sg_buf *out)
{
    struct sg_stream *s = sg_streams__find(st, key, key_len, sg_hash64(key, key_len, st->seed));
    if (!s)
        return -ENOENT;
    int rc = sg_buf_append_str(out, "{\"key\":");
    if (rc == 0)
        rc = sg_buf_append_json_string(out, s->key, s->key_len);
    if (rc == 0)
        rc = sg_buf_printf(out, ",\"partition\":%d,\"windows\":[", (int)s->partition);
    if (!s->is_idle)
        for (const struct sg_window *w = s->u.windows; rc == 0 && w; w = w->next) {
            if (w != s->u.windows)
                rc = sg_buf_append_char(out, ',');
            if (rc == 0)
                rc = sg_result__render(st, w, -1, out);
        }
    if (rc == 0)
        rc = sg_buf_append_char(out, ']');
    /* The forecast each model holds for the window after the last one it folded in. */
    if (rc == 0 && s->nmodels > 0) {
        rc = sg_buf_append_str(out, ",\"forecast\":{");
        for (unsigned i = 0; rc == 0 && i < s->nmodels; i++) {
            const struct sg_predict_model *m = &s->models[i];
            double next;
            if (i > 0)
                rc = sg_buf_append_char(out, ',');
            if (rc == 0)
                rc = sg_buf_append_json_string(out, st->names[m->field], st->name_lens[m->field]);
            if (rc == 0)
                rc = sg_buf_append_char(out, ':');
            if (rc == 0)
                rc = sg_predict_next(&st->predict_conf, m, &next)
                         ? sg_result__append_double(out, next)
                         : sg_buf_append_str(out, "null");
        }
        if (rc == 0)
            rc = sg_buf_append_char(out, '}');
    }
    return rc ? rc : sg_buf_append_char(out, '}');
}

/* The open windows of stream s, each handed to cb; stops at cb's first nonzero return. */
static int sg_streams__each_open(struct sg_streams *st, const struct sg_stream *s,
                                 sg_streams_open_cb cb, void *arg)
{
    if (s->is_idle)
        return 0;
    for (const struct sg_window *w = s->u.windows; w; w = w->next) {
        struct sg_window_result res;
        int rc = sg_result__open_numbers(st, w, &res);
        if (rc == 0)
            rc = cb(arg, &res);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int sg_streams_open_windows(struct sg_streams *st, const char *key, size_t key_len,
                            sg_streams_open_cb cb, void *arg)
{
    if (key) {
        const struct sg_stream *s =
            sg_streams__find(st, key, key_len, sg_hash64(key, key_len, st->seed));
        return s ? sg_streams__each_open(st, s, cb, arg) : 0;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i <= st->mask; i++)
        if (st->slots[i])
            rc = sg_streams__each_open(st, st->slots[i], cb, arg);
    return rc;
}

int sg_streams_render_list(struct sg_streams *st, size_t limit, struct sg_buf *out)
{
    int rc = sg_buf_printf(out, "{\"active_keys\":%zu,\"keys\":[", st->nkeys);
    size_t listed = 0;
    for (size_t i = 0; rc == 0 && i <= st->mask && listed < limit; i++) {
        const struct sg_stream *s = st->slots[i];
        if (!s)
            continue;
        size_t nwindows = 0;
        uint64_t count = 0;
        if (!s->is_idle)
            for (const struct sg_window *w = s->u.windows; w; w = w->next) {
                nwindows++;
                count += w->count;
            }
        if (listed++ > 0)
            rc = sg_buf_append_char(out, ',');
        if (rc == 0)
            rc = sg_buf_append_str(out, "{\"key\":");
        if (rc == 0)
            rc = sg_buf_append_json_string(out, s->key, s->key_len);
        if (rc == 0)
            rc = sg_buf_printf(out, ",\"partition\":%d,\"open_windows\":%zu,\"count\":%" PRIu64 "}",
                               (int)s->partition, nwindows, count);
    }
    if (rc == 0)
        rc = sg_buf_printf(out, "],\"truncated\":%s}", st->nkeys > listed ? "true" : "false");
    return rc;
}

int32_t sg_streams_partition(const struct sg_streams *st, const char *key, size_t key_len)
{
    return sg_kafka_partition(key, key_len, st->partitions);
}

/* ---- partitions owned through Kafka ------------------------------------------------ */

/* The partition's entry, growing the table; NULL when out of range or memory. */
static struct sg_streams_part *sg_streams__part(struct sg_streams *st, int32_t partition)
{
    if (partition < 0 || partition >= SG_STREAMS_MAX_PARTITIONS)
        return NULL;
    if ((uint32_t)partition >= st->nparts) {
        uint32_t n = st->nparts ? st->nparts : 16;
        while (n <= (uint32_t)partition)
            n *= 2;
        struct sg_streams_part *parts = realloc(st->parts, n * sizeof(*parts));
        if (!parts)
            return NULL;
        memset(parts + st->nparts, 0, (n - st->nparts) * sizeof(*parts));
        st->mem_bytes += (n - st->nparts) * sizeof(*parts);
        st->parts = parts;
        st->nparts = n;
    }
    return &st->parts[partition];
}

int sg_streams_partition_assign(struct sg_streams *st, int32_t partition,
                                const struct sg_streams_origin *from)
{
    struct sg_streams_part *p = sg_streams__part(st, partition);
    if (!p)
        return -ENOMEM;
    st->partitioned = true;
    *p = (struct sg_streams_part){.assigned = true, .last_wall = st->now_ms};
    if (from && from->watermark != INT64_MIN) {
        p->known = true;
        p->watermark = from->watermark;
        p->max_event_time = from->max_event_time;
    }
    sg_window__part_watermark(st);
    sg_streams__sync(st);
    return 0;
}

size_t sg_streams_partition_revoke(struct sg_streams *st, int32_t partition)
{
    size_t dropped = 0;
    if (partition < 0 || (uint32_t)partition >= st->nparts)
        return 0;
    st->parts[partition].assigned = false;
    /* Removing shifts table entries back, so the partition's streams are found first. */
    size_t n = 0;
    for (size_t i = 0; i <= st->mask; i++)
        n += st->slots[i] && st->slots[i]->partition == partition;
    struct sg_stream **gone = n ? malloc(n * sizeof(*gone)) : NULL;
    n = 0;
    for (size_t i = 0; gone && i <= st->mask; i++)
        if (st->slots[i] && st->slots[i]->partition == partition)
            gone[n++] = st->slots[i];
    for (size_t i = 0; i < n; i++) {
        struct sg_stream *s = gone[i];
        if (s->is_idle)
            sg_streams__make_active(st, s); /* off the idle FIFO */
        else
            dropped += sg_window__drop_stream(st, s);
        sg_streams__remove(st, s);
    }
    free(gone);
    if (!gone && dropped == 0) {
        /* Out of memory for the list: drop the windows one stream at a time instead. */
        for (size_t i = 0; i <= st->mask; i++) {
            struct sg_stream *s = st->slots[i];
            if (s && s->partition == partition && !s->is_idle && s->u.windows) {
                dropped += sg_window__drop_stream(st, s);
                sg_streams__make_idle(st, s); /* evicted with the idle keys */
            }
        }
    }
    sg_window__part_watermark(st);
    sg_streams__update_gauges(st);
    sg_streams__sync(st);
    return dropped;
}

int sg_streams_add_record(struct sg_streams *st, const struct sg_event *ev, int32_t partition,
                          int64_t offset, int64_t now_ms, enum sg_reject *why)
{
    struct sg_streams_part *p = sg_streams__part(st, partition);
    if (!p) {
        *why = SG_REJECT_SINK_FAILED;
        return -ENOMEM;
    }
    if (!p->assigned)
        (void)sg_streams_partition_assign(st, partition, NULL);
    st->origin = (struct sg_streams_origin){
        .offset = offset,
        .watermark = p->known ? p->watermark : INT64_MIN,
        .max_event_time = p->known ? p->max_event_time : INT64_MIN,
    };
    int rc = sg_streams__add(st, ev, p, partition, now_ms, why);
    st->origin.offset = -1;
    return rc;
}

void sg_streams_partition_holds(const struct sg_streams *st, struct sg_streams_hold *holds,
                                size_t n)
{
    for (size_t i = 0; i < n; i++)
        holds[i] = (struct sg_streams_hold){
            .origin = {.offset = -1, .watermark = INT64_MIN, .max_event_time = INT64_MIN},
            .min_end = INT64_MAX};
    for (uint32_t i = 0; i < st->heap_len; i++) {
        const struct sg_window *w = st->heap[i].w;
        const struct sg_streams_origin *o = sg_window__origin(st, w);
        int32_t part = w->stream->partition;
        if (part < 0 || (size_t)part >= n)
            continue;
        struct sg_streams_hold *h = &holds[part];
        if (o && o->offset >= 0 && (h->origin.offset < 0 || o->offset < h->origin.offset))
            h->origin = *o;
        if (w->end < h->min_end)
            h->min_end = w->end;
    }
}

bool sg_streams_partition_time(const struct sg_streams *st, int32_t partition,
                               struct sg_streams_origin *out)
{
    if (partition < 0 || (uint32_t)partition >= st->nparts || !st->parts[partition].assigned)
        return false;
    const struct sg_streams_part *p = &st->parts[partition];
    *out = (struct sg_streams_origin){
        .offset = -1,
        .watermark = p->known ? p->watermark : INT64_MIN,
        .max_event_time = p->known ? p->max_event_time : INT64_MIN,
    };
    return true;
}

int64_t sg_streams_last_window_end(const struct sg_streams *st, int64_t t)
{
    int64_t end;
    (void)sg_window__all_late(st, t, &end);
    return end;
}
