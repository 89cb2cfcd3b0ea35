/* chat_redis.c - private messages and presence of clustered applications
 * in Redis (see chat_redis.h and docs/cluster-chat.md). */
#include "chat_redis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"

#define DEDUP_TTL_MS "60000"
#define NODE_KEY_PREFIX "sohub:node:"

/* ---- scripts ---- */

/* KEYS: n, q [, dedup]; ARGV: queue cap, ts, from, text, channel, dedup ttl.
 * Returns {id, 1 delivered | 0 queued} or {0, -1} when the queue is full.
 * Redis runs it alone: the id, the stored message and the publish happen
 * together, so a subscriber that read `last` after its SUBSCRIBE was
 * confirmed misses nothing above it.
 *
 * The id is Redis' clock in microseconds (TIME), or last + 1 when that is
 * not above `last`.  Every id is then at most the clock of the moment it
 * was given (a user cannot get more than one message per microsecond: a
 * script takes several), so a Redis that lost writes (restarted empty,
 * an everysec AOF short of its last second, a failover to a replica that
 * lacked them) still gives ids above every id it gave before, as long as
 * its clock did not go back.  Ids are not consecutive: the message is
 * published as "PREV\nID\nTS\nFROM\nTEXT", PREV being the user's id before
 * it, so a subscriber can tell a missed publish.  2^53 (exact in AMF and
 * JSON numbers) is reached in the year 2255.  The queue cap counts the
 * stored messages (ZCARD: ack removes them). */
static const char SEND_SRC[] =
    "local d = KEYS[3]\n"
    "if d then\n"
    "  local prev = redis.call('GET', d)\n"
    "  if prev then\n"
    "    local i, s = string.match(prev, '^(%d+):(%d)$')\n"
    "    if i then return {tonumber(i), tonumber(s)} end\n"
    "  end\n"
    "end\n"
    "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return {0, -1} end\n"
    "local last = tonumber(redis.call('HGET', KEYS[1], 'last')) or 0\n"
    "local t = redis.call('TIME')\n"
    "local id = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "if id <= last then id = last + 1 end\n"
    "local sid = string.format('%d', id)\n"
    "redis.call('HSET', KEYS[1], 'last', sid)\n"
    "local p = sid .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4]\n"
    "redis.call('ZADD', KEYS[2], id, p)\n"
    "local st = 0\n"
    "if redis.call('PUBLISH', ARGV[5], string.format('%d', last) .. '\\n' .. p) > 0 then\n"
    "  st = 1\n"
    "end\n"
    "if d then redis.call('SET', d, sid .. ':' .. st, 'PX', ARGV[6]) end\n"
    "return {id, st}\n";

/* KEYS: n, q; ARGV: id.  Acknowledges up to min(id, last); returns
 * {acked, messages removed}. */
static const char ACK_SRC[] =
    "local h = redis.call('HMGET', KEYS[1], 'last', 'acked')\n"
    "local last = tonumber(h[1]) or 0\n"
    "local acked = tonumber(h[2]) or 0\n"
    "local id = tonumber(ARGV[1])\n"
    "if id > last then id = last end\n"
    "local removed = 0\n"
    "if id > acked then\n"
    "  redis.call('HSET', KEYS[1], 'acked', string.format('%d', id))\n"
    "  removed = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', id)\n"
    "  acked = id\n"
    "end\n"
    "return {acked, removed}\n";

/* KEYS: n, q.  Returns {last, acked, stored messages}. */
static const char USER_SRC[] =
    "local h = redis.call('HMGET', KEYS[1], 'last', 'acked')\n"
    "return {tonumber(h[1]) or 0, tonumber(h[2]) or 0, redis.call('ZCARD', KEYS[2])}\n";

/* KEYS: n, q; ARGV: after, max.  Returns {acked, message...}: one snapshot. */
static const char PAGE_SRC[] =
    "local acked = tonumber(redis.call('HGET', KEYS[1], 'acked')) or 0\n"
    "local r = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "table.insert(r, 1, acked)\n"
    "return r\n";

/* KEYS: presence hash, version; ARGV: user, node, count, since, channel.
 * Sets this node's entry of the user (keeping its `since` while it has
 * one) and publishes the user's totals with the room's next version. */
static const char PRES_SET_SRC[] =
    "local v = redis.call('HGET', KEYS[1], ARGV[1]) or ''\n"
    "local out, total, since, mine = {}, 0, nil, ARGV[4]\n"
    "for node, c, s in string.gmatch(v, '(%S+) (%d+) (%d+);') do\n"
    "  if node ~= ARGV[2] then\n"
    "    table.insert(out, node .. ' ' .. c .. ' ' .. s .. ';')\n"
    "    total = total + tonumber(c)\n"
    "    if not since or tonumber(s) < since then since = tonumber(s) end\n"
    "  else\n"
    "    mine = s\n"
    "  end\n"
    "end\n"
    "local c = tonumber(ARGV[3])\n"
    "if c > 0 then\n"
    "  table.insert(out, ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. mine .. ';')\n"
    "  total = total + c\n"
    "  local s = tonumber(mine)\n"
    "  if not since or s < since then since = s end\n"
    "end\n"
    "if total > 0 then redis.call('HSET', KEYS[1], ARGV[1], table.concat(out))\n"
    "else redis.call('HDEL', KEYS[1], ARGV[1]) end\n"
    "local ver = redis.call('INCR', KEYS[2])\n"
    "redis.call('PUBLISH', ARGV[5], ver .. '\\n' .. ARGV[1] .. '\\n' .. total .. '\\n' .. "
    "string.format('%d', since or 0))\n"
    "return total\n";

/* KEYS: presence hash, version; ARGV: channel, node key prefix.  Drops the entries
 * of nodes whose heartbeat key is gone, publishing each changed user.
 * (It reads the node keys it was not given: fine on one Redis, to be
 * revisited for Redis Cluster, see docs/cluster-chat.md.) */
static const char PRES_SWEEP_SRC[] =
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local alive, changed = {}, 0\n"
    "for i = 1, #all, 2 do\n"
    "  local out, total, since, dropped = {}, 0, nil, false\n"
    "  for node, c, s in string.gmatch(all[i + 1], '(%S+) (%d+) (%d+);') do\n"
    "    local a = alive[node]\n"
    "    if a == nil then\n"
    "      a = redis.call('EXISTS', ARGV[2] .. node) == 1\n"
    "      alive[node] = a\n"
    "    end\n"
    "    if a then\n"
    "      table.insert(out, node .. ' ' .. c .. ' ' .. s .. ';')\n"
    "      total = total + tonumber(c)\n"
    "      if not since or tonumber(s) < since then since = tonumber(s) end\n"
    "    else\n"
    "      dropped = true\n"
    "    end\n"
    "  end\n"
    "  if dropped then\n"
    "    changed = changed + 1\n"
    "    if total > 0 then redis.call('HSET', KEYS[1], all[i], table.concat(out))\n"
    "    else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "    local ver = redis.call('INCR', KEYS[2])\n"
    "    redis.call('PUBLISH', ARGV[1], ver .. '\\n' .. all[i] .. '\\n' .. total .. '\\n' .. "
    "string.format('%d', since or 0))\n"
    "  end\n"
    "end\n"
    "return changed\n";

/* KEYS: presence hash, version.  Returns {version, user, entries, ...}: the
 * room at one version (a change published later has a higher one). */
static const char PRES_READ_SRC[] =
    "local r = redis.call('HGETALL', KEYS[1])\n"
    "table.insert(r, 1, tonumber(redis.call('GET', KEYS[2])) or 0)\n"
    "return r\n";

static app_redis_script s_send, s_ack, s_user, s_page, s_pres_set, s_pres_sweep, s_pres_read;
static bool scripts_ready;

int chat_redis_register(app_cluster *c)
{
    if (!scripts_ready) {
        app_redis_script_init(&s_send, "chat.send", SEND_SRC);
        app_redis_script_init(&s_ack, "chat.ack", ACK_SRC);
        app_redis_script_init(&s_user, "chat.user", USER_SRC);
        s_send.acks = s_ack.acks = true;
        app_redis_script_init(&s_page, "chat.page", PAGE_SRC);
        app_redis_script_init(&s_pres_set, "presence.set", PRES_SET_SRC);
        app_redis_script_init(&s_pres_sweep, "presence.sweep", PRES_SWEEP_SRC);
        app_redis_script_init(&s_pres_read, "presence.read", PRES_READ_SRC);
        scripts_ready = true;
    }
    const app_redis_script *all[] = {&s_send, &s_ack, &s_user, &s_page, &s_pres_set, &s_pres_sweep,
                                     &s_pres_read};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (app_cluster_add_script(c, all[i]) != 0)
            return SH_ENOMEM;
    return 0;
}

/* ---- keys ---- */

/* Longest key: prefix, tag, suffix, sender, clientId. */
#define KEY_MAX 640

/* "sohub:chat:{LEN:APP:USER}" + suffix into k; its length (0: too long).
 * Pieces are copied, not formatted: GCC's format checks misread the
 * sanitizer build's null checks here. */
static size_t user_key(char *k, const char *app, const char *user, const char *suffix)
{
    size_t al = strlen(app), ul = strlen(user), sl = strlen(suffix);
    int n = snprintf(k, KEY_MAX, "sohub:chat:{%zu:", al);
    if (n < 0 || (size_t)n + al + 1 + ul + 1 + sl >= KEY_MAX)
        return 0;
    char *p = k + n;
    memcpy(p, app, al);
    p += al;
    *p++ = ':';
    memcpy(p, user, ul);
    p += ul;
    *p++ = '}';
    memcpy(p, suffix, sl + 1);
    return (size_t)(p - k) + sl;
}

static size_t room_key(char *k, const char *room, const char *suffix)
{
    int n = snprintf(k, KEY_MAX, "sohub:pres:{%s}%s", room, suffix);
    return n < 0 || n >= KEY_MAX ? 0 : (size_t)n;
}

/* ---- message payloads ---- */

static bool parse_u64(const char **p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;
    if (s == end || *s < '0' || *s > '9')
        return false;
    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    *p = s;
    *out = v;
    return true;
}

/* "ID\nTS\nFROM\nTEXT" into m (sender and text point into a copy owned by
 * m->sender: free(m->sender) frees both). */
static bool parse_msg(const char *s, size_t len, chat_store_msg *m)
{
    const char *p = s, *end = s + len;
    uint64_t id, ts;
    if (!parse_u64(&p, end, &id) || p == end || *p++ != '\n' || !parse_u64(&p, end, &ts) ||
        p == end || *p++ != '\n')
        return false;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        return false;
    size_t flen = (size_t)(nl - p), tlen = (size_t)(end - nl - 1);
    char *buf = malloc(flen + 1 + tlen + 1);
    if (!buf)
        return false;
    memcpy(buf, p, flen);
    buf[flen] = '\0';
    memcpy(buf + flen + 1, nl + 1, tlen);
    buf[flen + 1 + tlen] = '\0';
    *m = (chat_store_msg){.id = id, .sender = buf, .ts = (int64_t)ts,
                          .text = buf + flen + 1, .text_len = tlen};
    return true;
}

/* ---- commands ---- */

typedef struct req {
    void (*fn)(void);   /* the caller's callback, cast back by the reply handler */
    void *ud;
} req;

static req *req_new(void (*fn)(void), void *ud)
{
    req *r = malloc(sizeof(*r));
    if (r)
        *r = (req){fn, ud};
    return r;
}

static int issue(app_cluster_link *l, const app_redis_script *s, app_redis_cb cb, req *rq,
                 int nkeys, int argc, const char **argv, const size_t *lens)
{
    if (!rq)
        return SH_ENOMEM;
    if (!app_cluster_link_up(l)) {
        free(rq);
        return SH_ESTATE;
    }
    int rc = s ? app_redis_eval(app_cluster_cmd(l), s, cb, rq, nkeys, argc, argv, lens)
               : app_redis_cmd(app_cluster_cmd(l), cb, rq, argc, argv, lens);
    if (rc < 0)
        free(rq);
    return rc;
}

/* A command without answer is the link's failure, which the link logs
 * once; per-command lines stay at debug level. */
static void log_error(const char *what, const redisReply *rep)
{
    if (!rep)
        SH_LOG(SH_LOG_DEBUG, "chat: redis: %s: no answer", what);
    else if (rep->type == REDIS_REPLY_ERROR)
        SH_LOG(SH_LOG_WARN, "chat: redis: %s: %s", what, rep->str);
    else
        SH_LOG(SH_LOG_WARN, "chat: redis: %s: unexpected reply (type %d)", what, rep->type);
}

static uint64_t int_or_zero(const redisReply *rep)
{
    long long v;
    return rep && app_redis_reply_int(rep, &v) && v > 0 ? (uint64_t)v : 0;
}

static void on_user(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    req *rq = ud;
    chat_redis_user_fn fn = (chat_redis_user_fn)rq->fn;
    void *fud = rq->ud;
    free(rq);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        log_error("read counters", rep);
        fn(fud, SH_EIO, 0, 0, 0);
        return;
    }
    fn(fud, 0, int_or_zero(rep->element[0]), int_or_zero(rep->element[1]),
       int_or_zero(rep->element[2]));
}

int chat_redis_user_read(app_cluster_link *l, const char *app, const char *user,
                         chat_redis_user_fn fn, void *ud)
{
    char kn[KEY_MAX], kq[KEY_MAX];
    size_t ln = user_key(kn, app, user, ":n"), lq = user_key(kq, app, user, ":q");
    if (!ln || !lq)
        return SH_ELIMIT;
    const char *argv[2] = {kn, kq};
    size_t lens[2] = {ln, lq};
    return issue(l, &s_user, on_user, req_new((void (*)(void))fn, ud), 2, 2, argv, lens);
}

static void on_page(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    req *rq = ud;
    chat_redis_page_fn fn = (chat_redis_page_fn)rq->fn;
    void *fud = rq->ud;
    free(rq);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        log_error("read messages", rep);
        fn(fud, SH_EIO, 0, NULL, 0);
        return;
    }
    uint64_t acked = int_or_zero(rep->element[0]);
    size_t n = rep->elements - 1;
    chat_store_msg *m = n ? calloc(n, sizeof(*m)) : NULL;
    if (n && !m) {
        fn(fud, SH_ENOMEM, 0, NULL, 0);
        return;
    }
    size_t got = 0;
    int status = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = rep->element[i + 1];
        if (e->type != REDIS_REPLY_STRING || !parse_msg(e->str, e->len, &m[got])) {
            SH_LOG(SH_LOG_ERROR, "chat: redis: a stored message cannot be decoded");
            status = SH_EIO;
            break;
        }
        got++;
    }
    fn(fud, status, acked, status ? NULL : m, status ? 0 : got);
    for (size_t i = 0; i < got; i++)
        free(m[i].sender);
    free(m);
}

int chat_redis_page(app_cluster_link *l, const char *app, const char *user, uint64_t after,
                    size_t max, chat_redis_page_fn fn, void *ud)
{
    char kn[KEY_MAX], kq[KEY_MAX], a[24], mx[24];
    size_t ln = user_key(kn, app, user, ":n"), lq = user_key(kq, app, user, ":q");
    if (!ln || !lq)
        return SH_ELIMIT;
    const char *argv[4] = {kn, kq, a, mx};
    size_t lens[4] = {ln, lq, (size_t)snprintf(a, sizeof(a), "%" PRIu64, after),
                      (size_t)snprintf(mx, sizeof(mx), "%zu", max)};
    return issue(l, &s_page, on_page, req_new((void (*)(void))fn, ud), 2, 4, argv, lens);
}

static void on_sent(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    req *rq = ud;
    chat_redis_sent_fn fn = (chat_redis_sent_fn)rq->fn;
    void *fud = rq->ud;
    free(rq);
    long long id, st;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        !app_redis_reply_int(rep->element[0], &id) ||
        !app_redis_reply_int(rep->element[1], &st)) {
        log_error("send", rep);
        fn(fud, SH_EIO, 0, false);
        return;
    }
    if (st < 0) {
        fn(fud, SH_ELIMIT, 0, false);
        return;
    }
    fn(fud, 0, (uint64_t)id, st == 1);
}

int chat_redis_send(app_cluster_link *l, const char *app, const char *to, const char *from,
                    int64_t ts, const char *text, size_t text_len, const char *cid,
                    uint32_t queue, chat_redis_sent_fn fn, void *ud)
{
    char kn[KEY_MAX], kq[KEY_MAX], kd[KEY_MAX], kc[KEY_MAX], q[16], t[24];
    size_t ln = user_key(kn, app, to, ":n"), lq = user_key(kq, app, to, ":q");
    size_t lc = user_key(kc, app, to, ":c"), ld = 0;
    if (*cid) {
        char sfx[KEY_MAX];
        int n = snprintf(sfx, sizeof(sfx), ":d:%s\n%s", from, cid);
        ld = n > 0 && n < (int)sizeof(sfx) ? user_key(kd, app, to, sfx) : 0;
        if (!ld)
            return SH_ELIMIT;
    }
    if (!ln || !lq || !lc)
        return SH_ELIMIT;
    int nk = ld ? 3 : 2;
    const char *argv[9];
    size_t lens[9];
    int i = 0;
    argv[i] = kn, lens[i++] = ln;
    argv[i] = kq, lens[i++] = lq;
    if (ld)
        argv[i] = kd, lens[i++] = ld;
    argv[i] = q, lens[i++] = (size_t)snprintf(q, sizeof(q), "%u", queue);
    argv[i] = t, lens[i++] = (size_t)snprintf(t, sizeof(t), "%" PRId64, ts);
    argv[i] = from, lens[i++] = strlen(from);
    argv[i] = text, lens[i++] = text_len;
    argv[i] = kc, lens[i++] = lc;
    argv[i] = DEDUP_TTL_MS, lens[i++] = strlen(DEDUP_TTL_MS);
    return issue(l, &s_send, on_sent, req_new((void (*)(void))fn, ud), nk, i, argv, lens);
}

static void on_acked(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    req *rq = ud;
    chat_redis_ack_fn fn = (chat_redis_ack_fn)rq->fn;
    void *fud = rq->ud;
    free(rq);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        log_error("ack", rep);
        fn(fud, SH_EIO, 0, 0);
        return;
    }
    fn(fud, 0, int_or_zero(rep->element[0]), int_or_zero(rep->element[1]));
}

int chat_redis_ack(app_cluster_link *l, const char *app, const char *user, uint64_t id,
                   chat_redis_ack_fn fn, void *ud)
{
    char kn[KEY_MAX], kq[KEY_MAX], a[24];
    size_t ln = user_key(kn, app, user, ":n"), lq = user_key(kq, app, user, ":q");
    if (!ln || !lq)
        return SH_ELIMIT;
    const char *argv[3] = {kn, kq, a};
    size_t lens[3] = {ln, lq, (size_t)snprintf(a, sizeof(a), "%" PRIu64, id)};
    return issue(l, &s_ack, on_acked, req_new((void (*)(void))fn, ud), 2, 3, argv, lens);
}

/* ---- the user's channel ---- */

/* The handlers of every subscription of this process (chat.c's), set once
 * at chat_redis_register: the subscription's ud is the caller's. */
static chat_redis_live_fn live_fn;
static chat_redis_pres_live_fn pres_live_fn;

void chat_redis_set_handlers(chat_redis_live_fn user_fn, chat_redis_pres_live_fn room_fn)
{
    live_fn = user_fn;
    pres_live_fn = room_fn;
}

static void on_live(app_redis *r, app_redis_sub_event ev, const char *msg, size_t len, void *ud)
{
    (void)r;
    if (ev != APP_REDIS_SUB_MESSAGE) {
        live_fn(ud, ev, 0, NULL);
        return;
    }
    /* "PREV\n" then the stored message */
    const char *p = msg, *end = msg + len;
    uint64_t prev;
    chat_store_msg m;
    if (!parse_u64(&p, end, &prev) || p == end || *p++ != '\n' ||
        !parse_msg(p, (size_t)(end - p), &m)) {
        SH_LOG(SH_LOG_ERROR, "chat: redis: a published message cannot be decoded");
        live_fn(ud, ev, 0, NULL);
        return;
    }
    live_fn(ud, ev, prev, &m);
    free(m.sender);
}

int chat_redis_subscribe(app_cluster_link *l, const char *app, const char *user, void *ud)
{
    char k[KEY_MAX];
    size_t kl = user_key(k, app, user, ":c");
    if (!kl)
        return SH_ELIMIT;
    return app_redis_subscribe(app_cluster_sub(l), k, kl, on_live, ud);
}

void chat_redis_unsubscribe(app_cluster_link *l, const char *app, const char *user)
{
    char k[KEY_MAX];
    size_t kl = user_key(k, app, user, ":c");
    if (kl)
        app_redis_unsubscribe(app_cluster_sub(l), k, kl);
}

/* ---- presence ---- */

static void on_done(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    req *rq = ud;
    chat_redis_done_fn fn = (chat_redis_done_fn)rq->fn;
    void *fud = rq->ud;
    free(rq);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (!ok)
        log_error("presence", rep);
    if (fn)
        fn(fud, ok ? 0 : SH_EIO);
}

int chat_redis_presence_set(app_cluster_link *l, const char *room, const char *node_id,
                            const char *user, size_t count, int64_t since_ms,
                            chat_redis_done_fn fn, void *ud)
{
    char kh[KEY_MAX], kv[KEY_MAX], kc[KEY_MAX], c[24], s[24];
    size_t lh = room_key(kh, room, ""), lv = room_key(kv, room, ":v");
    size_t lc = room_key(kc, room, ":c");
    if (!lh || !lv || !lc)
        return SH_ELIMIT;
    const char *argv[7] = {kh, kv, user, node_id, c, s, kc};
    size_t lens[7] = {lh, lv, strlen(user), strlen(node_id),
                      (size_t)snprintf(c, sizeof(c), "%zu", count),
                      (size_t)snprintf(s, sizeof(s), "%" PRId64, since_ms), lc};
    return issue(l, &s_pres_set, on_done, req_new((void (*)(void))fn, ud), 2, 7, argv, lens);
}

int chat_redis_presence_sweep(app_cluster_link *l, const char *room)
{
    char kh[KEY_MAX], kv[KEY_MAX], kc[KEY_MAX];
    size_t lh = room_key(kh, room, ""), lv = room_key(kv, room, ":v");
    size_t lc = room_key(kc, room, ":c");
    if (!lh || !lv || !lc)
        return SH_ELIMIT;
    const char *argv[4] = {kh, kv, kc, NODE_KEY_PREFIX};
    size_t lens[4] = {lh, lv, lc, strlen(NODE_KEY_PREFIX)};
    return issue(l, &s_pres_sweep, on_done, req_new(NULL, NULL), 2, 4, argv, lens);
}

/* "NODE COUNT SINCE;..." -> total count, earliest since. */
static void pres_totals(const char *v, size_t len, size_t *count, int64_t *since)
{
    const char *p = v, *end = v + len;
    *count = 0;
    *since = 0;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        if (!sp)
            return;
        p = sp + 1;
        uint64_t c, s;
        if (!parse_u64(&p, end, &c) || p == end || *p++ != ' ' || !parse_u64(&p, end, &s) ||
            p == end || *p++ != ';')
            return;
        *count += (size_t)c;
        if (*since == 0 || (int64_t)s < *since)
            *since = (int64_t)s;
    }
}

static void on_pres_read(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    req *rq = ud;
    chat_redis_pres_fn fn = (chat_redis_pres_fn)rq->fn;
    void *fud = rq->ud;
    free(rq);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        log_error("presence read", rep);
        fn(fud, SH_EIO, 0, NULL, 0, 0);
        return;
    }
    uint64_t ver = int_or_zero(rep->element[0]);
    for (size_t i = 1; i + 1 < rep->elements; i += 2) {
        const redisReply *u = rep->element[i], *v = rep->element[i + 1];
        if (u->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        size_t count;
        int64_t since;
        pres_totals(v->str, v->len, &count, &since);
        if (count)
            fn(fud, 0, ver, u->str, count, since);
    }
    fn(fud, 0, ver, NULL, 0, 0);
}

int chat_redis_presence_read(app_cluster_link *l, const char *room, chat_redis_pres_fn fn,
                             void *ud)
{
    char kh[KEY_MAX], kv[KEY_MAX];
    size_t lh = room_key(kh, room, ""), lv = room_key(kv, room, ":v");
    if (!lh || !lv)
        return SH_ELIMIT;
    const char *argv[2] = {kh, kv};
    size_t lens[2] = {lh, lv};
    return issue(l, &s_pres_read, on_pres_read, req_new((void (*)(void))fn, ud), 2, 2, argv,
                 lens);
}

static void on_pres_live(app_redis *r, app_redis_sub_event ev, const char *msg, size_t len,
                         void *ud)
{
    (void)r;
    if (ev != APP_REDIS_SUB_MESSAGE) {
        pres_live_fn(ud, ev, 0, NULL, 0, 0);
        return;
    }
    /* "VERSION\nUSER\nCOUNT\nSINCE" */
    const char *p = msg, *end = msg + len;
    uint64_t ver, c, since;
    if (!parse_u64(&p, end, &ver) || p == end || *p++ != '\n')
        return;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || (size_t)(nl - p) > APP_NAME_MAX)
        return;
    char user[APP_NAME_MAX + 1];
    memcpy(user, p, (size_t)(nl - p));
    user[nl - p] = '\0';
    p = nl + 1;
    if (!parse_u64(&p, end, &c) || p == end || *p++ != '\n' || !parse_u64(&p, end, &since))
        return;
    pres_live_fn(ud, ev, ver, user, (size_t)c, (int64_t)since);
}

int chat_redis_presence_subscribe(app_cluster_link *l, const char *room, void *ud)
{
    char kc[KEY_MAX];
    size_t lc = room_key(kc, room, ":c");
    if (!lc)
        return SH_ELIMIT;
    return app_redis_subscribe(app_cluster_sub(l), kc, lc, on_pres_live, ud);
}

void chat_redis_presence_unsubscribe(app_cluster_link *l, const char *room)
{
    char kc[KEY_MAX];
    size_t lc = room_key(kc, room, ":c");
    if (lc)
        app_redis_unsubscribe(app_cluster_sub(l), kc, lc);
}
