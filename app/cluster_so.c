/* cluster_so.c - see cluster_so.h: clustered shared objects in Redis.
 *
 * Keys of room R ("app/instance"), all with the hash tag {R}:
 *   so:{R}:e          the room's epoch (drawn by the first node that reads
 *                     the room; a Redis that lost its data has none)
 *   so:{R}:o          hash: object name -> version (its persistent objects)
 *   so:{R}:s:NAME     hash: slot key -> value (wire bytes, as the store)
 *   so:{R}:m:NAME     hash: slot key -> "VERSION WRITER" of its last write
 *                     or removal (rule 3); WRITER = NODE_ID:CLIENT_ID
 *   so:{R}:x:NAME     stream: one entry per update, id VERSION-1, field p =
 *                     the update, trimmed to about history_depth entries
 *   so:{R}:t          hash: name -> version of its temporary objects (those
 *                     some node holds a lease on)
 *   so:{R}:tb         the highest version a dropped temporary object had: one
 *                     made again starts above it
 *   so:{R}:ts:NAME, so:{R}:tm:NAME, so:{R}:tx:NAME   as s, m, x
 *   so:{R}:tl:NAME    hash: node id -> Unix ms its lease ends (node_ttl_ms
 *                     after it was last taken or renewed)
 *   so:{R}            pub/sub channel: "VERSION UPDATE" per update of a
 *                     persistent object; "TVERSION UPDATE" of a temporary
 *                     one; "NVERSION NAME" temporary object made (empty),
 *                     "GVERSION NAME" dropped; "S"/"s" + SendMessage to a
 *                     persistent / temporary object
 *
 * UPDATE (built by the script): u16 name length, name, u16 tag length, tag
 * ("NODE_ID:SEQ" of the proposal, so the writer's node knows its own),
 * u32 count, then per change u16 key length, key, u8 0 = set / 1 = remove,
 * u32 value length, value.  Integers big-endian. */
#include "cluster_so.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "sh_err.h"
#include "sh_log.h"
#include "sh_map.h"
#include "sh_mem.h"

/* ---- scripts ---- */

/* KEYS: epoch, objects, slots, meta, stream, then for a temporary object
 * its leases (the object must exist, its update is published with a "T"),
 * for a persistent object with quotas its application's usage.  ARGV:
 * epoch, name, base version, writer, conflict ("r" reject / "l" last
 * writer wins), channel, history depth, tag, n, expected version (0 = any:
 * a compare-and-set of a server write otherwise), then n times key, "s" or
 * "r", value, then the kind ("t" temporary, "p" persistent, "w" a
 * persistent object's server write: its quotas refuse all or nothing), the
 * quotas: objects, bytes (0 = none).
 * Answers {'OK', new version or 0, refused...}: a refused key is its name
 * (stale, rule 3) or {key, 'o' | 'b'} (past the objects or bytes quota);
 * {'EPOCH', epoch} or {'CAS', current version}. */
static const char update_src[] =
    /* A shebang script (Redis 7): refused as a whole, before it writes
     * anything, when Redis is out of memory; Redis does not roll a script
     * back, so one stopped half-way would leave half an update. */
    "#!lua\n"
    "local ep = redis.call('GET', KEYS[1])\n"
    "if ep ~= ARGV[1] then return {'EPOCH', ep or ''} end\n"
    "local name, base, writer = ARGV[2], tonumber(ARGV[3]), ARGV[4]\n"
    "local reject, n = ARGV[5] == 'r', tonumber(ARGV[9])\n"
    "local kind = ARGV[11 + 3 * n]\n"
    "local temp = kind == 't'\n"
    "local quota = not temp and #KEYS > 5\n"
    "local cur = redis.call('HGET', KEYS[2], name)\n"
    "if temp and not cur then return {'GONE'} end\n"
    "cur = tonumber(cur or '1')\n"
    "local expect = tonumber(ARGV[10])\n"
    "if expect > 0 and cur ~= expect then return {'CAS', cur} end\n"
    "local newv = cur + 1\n"
    "local stale, ok = {}, {}\n"
    "for i = 0, n - 1 do\n"
    "  local k = ARGV[11 + 3 * i]\n"
    "  local bad = false\n"
    "  if reject then\n"
    "    local m = redis.call('HGET', KEYS[4], k)\n"
    "    if m then\n"
    "      local sp = string.find(m, ' ', 1, true)\n"
    "      if string.sub(m, sp + 1) ~= writer and base < tonumber(string.sub(m, 1, sp - 1)) then\n"
    "        bad = true\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if bad then stale[#stale + 1] = k else ok[#ok + 1] = i end\n"
    "end\n"
    "local made, bytes = false, 0\n"
    "if quota and #ok > 0 then\n"
    "  -- the application's quotas (so.h): a new object needs room for one\n"
    "  -- more, a key that grows the stored bytes room for them\n"
    "  local qo, qb = tonumber(ARGV[12 + 3 * n]), tonumber(ARGV[13 + 3 * n])\n"
    "  local use = redis.call('HMGET', KEYS[6], 'objects', 'bytes')\n"
    "  local objs = tonumber(use[1] or '0')\n"
    "  bytes = tonumber(use[2] or '0')\n"
    "  made = redis.call('HEXISTS', KEYS[2], name) == 0\n"
    "  local keep, over = {}, {}\n"
    "  for _, i in ipairs(ok) do\n"
    "    local k, kind_, v = ARGV[11 + 3 * i], ARGV[12 + 3 * i], ARGV[13 + 3 * i]\n"
    "    local had = redis.call('HSTRLEN', KEYS[3], k)\n"
    "    local grow = (kind_ == 's' and #k + #v or 0) - (had > 0 and #k + had or 0)\n"
    "    if made and qo > 0 and objs >= qo then\n"
    "      over[#over + 1] = {k, 'o'}\n"
    "    elseif grow > 0 and qb > 0 and bytes + grow > qb then\n"
    "      over[#over + 1] = {k, 'b'}\n"
    "    else\n"
    "      bytes = math.max(bytes + grow, 0)\n"
    "      keep[#keep + 1] = i\n"
    "    end\n"
    "  end\n"
    "  if kind == 'w' and #over > 0 then\n"
    "    for _, i in ipairs(keep) do\n"
    "      over[#over + 1] = {ARGV[11 + 3 * i], over[1][2]}\n"
    "    end\n"
    "    keep = {}\n"
    "  end\n"
    "  ok = keep\n"
    "  for _, o in ipairs(over) do stale[#stale + 1] = o end\n"
    "end\n"
    "if #ok == 0 then\n"
    "  table.insert(stale, 1, 0)\n"
    "  table.insert(stale, 1, 'OK')\n"
    "  return stale\n"
    "end\n"
    "local parts = {struct.pack('>I2', #name) .. name .. struct.pack('>I2', #ARGV[8]) ..\n"
    "               ARGV[8] .. struct.pack('>I4', #ok)}\n"
    "for _, i in ipairs(ok) do\n"
    "  local k, kind, v = ARGV[11 + 3 * i], ARGV[12 + 3 * i], ARGV[13 + 3 * i]\n"
    "  if kind == 's' then\n"
    "    parts[#parts + 1] = struct.pack('>I2', #k) .. k .. '\\0' .. struct.pack('>I4', #v) .. v\n"
    "  else\n"
    "    parts[#parts + 1] = struct.pack('>I2', #k) .. k .. '\\1' .. struct.pack('>I4', 0)\n"
    "  end\n"
    "end\n"
    "local upd = table.concat(parts)\n"
    "-- the stream is history, read to seed the nodes' history: best effort,\n"
    "-- an id it refuses must never block the object's writes\n"
    "redis.pcall('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], newv .. '-1', 'p', upd)\n"
    "local meta = newv .. ' ' .. writer\n"
    "for _, i in ipairs(ok) do\n"
    "  local k, kind = ARGV[11 + 3 * i], ARGV[12 + 3 * i]\n"
    "  if kind == 's' then\n"
    "    redis.call('HSET', KEYS[3], k, ARGV[13 + 3 * i])\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[3], k)\n"
    "  end\n"
    "  redis.call('HSET', KEYS[4], k, meta)\n"
    "end\n"
    "redis.call('HSET', KEYS[2], name, newv)\n"
    "if quota then\n"
    "  redis.call('HSET', KEYS[6], 'bytes', bytes)\n"
    "  if made then redis.call('HINCRBY', KEYS[6], 'objects', 1) end\n"
    "end\n"
    "if temp then\n"
    "  -- the object's keys expire with its leases' (so-temp renews them)\n"
    "  local ttl = redis.call('PTTL', KEYS[6])\n"
    "  if ttl > 0 then\n"
    "    for i = 3, 5 do redis.call('PEXPIRE', KEYS[i], ttl) end\n"
    "  end\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[6], (temp and 'T' or '') .. newv .. ' ' .. upd)\n"
    "table.insert(stale, 1, newv)\n"
    "table.insert(stale, 1, 'OK')\n"
    "return stale\n";

/* KEYS: epoch, objects, temporary objects.  ARGV: an epoch to use when the
 * room has none, the key prefix "so:{R}:", how many updates of history to
 * return per object.  Returns {epoch, name, version, {key, value, slot
 * version, ...}, {version, {keys...}, ...} (newest first), name, ...}: the
 * persistent objects, then a marker entry {"", 0, {}, {}} (no object has
 * an empty name), then the temporary objects the same way. */
static const char snapshot_src[] =
    "local function keys_of(p)\n"
    "  local nl, pos = struct.unpack('>I2', p, 1)\n"
    "  local tl\n"
    "  tl, pos = struct.unpack('>I2', p, pos + nl)\n"
    "  local n\n"
    "  n, pos = struct.unpack('>I4', p, pos + tl)\n"
    "  local ks = {}\n"
    "  for i = 1, n do\n"
    "    local kl, vl\n"
    "    kl, pos = struct.unpack('>I2', p, pos)\n"
    "    ks[#ks + 1] = string.sub(p, pos, pos + kl - 1)\n"
    "    vl, pos = struct.unpack('>I4', p, pos + kl + 1)\n"
    "    pos = pos + vl\n"
    "  end\n"
    "  return ks\n"
    "end\n"
    "local ep = redis.call('GET', KEYS[1])\n"
    "if not ep then\n"
    "  ep = ARGV[1]\n"
    "  redis.call('SET', KEYS[1], ep)\n"
    "end\n"
    "local out = {ep}\n"
    "local function objects(okey, pre)\n"
    "  local objs = redis.call('HGETALL', okey)\n"
    "  for i = 1, #objs, 2 do\n"
    "    local name = objs[i]\n"
    "    local slots = redis.call('HGETALL', ARGV[2] .. pre .. 's:' .. name)\n"
    "    local flat = {}\n"
    "    for j = 1, #slots, 2 do\n"
    "      local m = redis.call('HGET', ARGV[2] .. pre .. 'm:' .. name, slots[j]) or '0 '\n"
    "      flat[#flat + 1] = slots[j]\n"
    "      flat[#flat + 1] = slots[j + 1]\n"
    "      flat[#flat + 1] = tonumber(string.sub(m, 1, string.find(m, ' ', 1, true) - 1))\n"
    "    end\n"
    "    local hist = {}\n"
    "    if tonumber(ARGV[3]) > 0 then\n"
    "      local xs = redis.call('XREVRANGE', ARGV[2] .. pre .. 'x:' .. name, '+', '-', 'COUNT',\n"
    "                            ARGV[3])\n"
    "      for _, x in ipairs(xs) do\n"
    "        hist[#hist + 1] = tonumber(string.sub(x[1], 1, string.find(x[1], '-', 1, true) - 1))\n"
    "        hist[#hist + 1] = keys_of(x[2][2])\n"
    "      end\n"
    "    end\n"
    "    out[#out + 1] = name\n"
    "    out[#out + 1] = tonumber(objs[i + 1])\n"
    "    out[#out + 1] = flat\n"
    "    out[#out + 1] = hist\n"
    "  end\n"
    "end\n"
    "objects(KEYS[2], '')\n"
    "out[#out + 1] = ''\n"
    "out[#out + 1] = 0\n"
    "out[#out + 1] = {}\n"
    "out[#out + 1] = {}\n"
    "objects(KEYS[3], 't')\n"
    "return out\n";

/* Leases on temporary objects, and the sweep.  KEYS: epoch, temporary
 * objects, highest dropped version.  ARGV: epoch, key prefix "so:{R}:",
 * channel, node id, lease ms, keep ms (the keys' time to live), then
 * triples: "+" (take or renew) or "-" (give back), name, the version this
 * node has of it (0 = nothing worth keeping).  An object that is not there
 * is made at a version above both that and every dropped one's, so no
 * client sees versions go back.  Then every lease past its end goes, and
 * every object left without a lease is dropped.  Returns {"OK"} or
 * {"EPOCH", epoch}. */
static const char temp_src[] =
    "#!lua\n"
    "local ep = redis.call('GET', KEYS[1])\n"
    "if ep ~= ARGV[1] then return {'EPOCH', ep or ''} end\n"
    "local pre, chan, node = ARGV[2], ARGV[3], ARGV[4]\n"
    "local lease, keep = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local kinds = {'ts:', 'tm:', 'tx:', 'tl:'}\n"
    "for i = 7, #ARGV - 2, 3 do\n"
    "  local name = ARGV[i + 1]\n"
    "  local lk = pre .. 'tl:' .. name\n"
    "  if ARGV[i] == '+' then\n"
    "    redis.call('HSET', lk, node, now + lease)\n"
    "    if not redis.call('HGET', KEYS[2], name) then\n"
    "      local v = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(ARGV[i + 2])) + 1\n"
    "      redis.call('HSET', KEYS[2], name, v)\n"
    "      redis.call('PUBLISH', chan, 'N' .. v .. ' ' .. name)\n"
    "    end\n"
    "    for _, k in ipairs(kinds) do redis.call('PEXPIRE', pre .. k .. name, keep) end\n"
    "  else\n"
    "    redis.call('HDEL', lk, node)\n"
    "  end\n"
    "end\n"
    "local names = redis.call('HKEYS', KEYS[2])\n"
    "for _, name in ipairs(names) do\n"
    "  local lk = pre .. 'tl:' .. name\n"
    "  local ls = redis.call('HGETALL', lk)\n"
    "  local live = false\n"
    "  for j = 1, #ls, 2 do\n"
    "    if tonumber(ls[j + 1]) < now then redis.call('HDEL', lk, ls[j]) else live = true end\n"
    "  end\n"
    "  if not live then\n"
    "    local v = tonumber(redis.call('HGET', KEYS[2], name))\n"
    "    redis.call('HDEL', KEYS[2], name)\n"
    "    for _, k in ipairs(kinds) do redis.call('DEL', pre .. k .. name) end\n"
    "    if v > tonumber(redis.call('GET', KEYS[3]) or '0') then\n"
    "      redis.call('SET', KEYS[3], v)\n"
    "    end\n"
    "    redis.call('PUBLISH', chan, 'G' .. v .. ' ' .. name)\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[2], keep)\n"
    "redis.call('PEXPIRE', KEYS[3], keep)\n"
    "return {'OK'}\n";

static app_redis_script update_script, snapshot_script, temp_script;
static bool scripts_ready;

/* ---- state ---- */

typedef enum room_state {
    R_WAIT_SUB = 0, /* waiting for the subscription (READY) */
    R_SNAPSHOT,     /* reading the snapshot; messages are buffered */
    R_LIVE,         /* in sync: messages applied as they come, writes taken */
    R_STALE,        /* out of sync (link lost, gap, failed read): read again */
} room_state;

typedef struct buf_msg {
    struct buf_msg *next;
    size_t len;
    char data[];
} buf_msg;

typedef struct cso_room {
    app_cluster_so *cs;
    char *name;             /* "app/instance" */
    char *prefix;           /* "so:{app/instance}:" */
    char *chan;             /* "so:{app/instance}" */
    app_cluster_link *link;
    room_state state;
    bool sub_ready;         /* subscription confirmed and not lost since */
    bool loading;           /* the engine waits for so_engine_room_loaded */
    uint64_t load_deadline; /* loop ms: a load still waiting for the link then fails */
    bool busy;              /* a snapshot is being applied: the engine may drop the room */
    bool forget;            /* it did: forget the room once that is over */
    bool loaded;            /* the engine has the room */
    char epoch[40];         /* "" until the first snapshot */
    bool was_reset;         /* the last snapshot found another epoch */
    uint64_t snap_gen;      /* a snapshot reply of an older generation is ignored */
    uint32_t history;       /* stream length */
    buf_msg *buf, **buf_tail;
    size_t nbuf;            /* bytes buffered */
    /* [cluster] wait_replicas: this node's write of seq hold_seq is
     * published but Redis has not answered (its replicas may not have it
     * yet): the room's updates wait in buf, so the writer gets its Success
     * with the update, once the answer says it is stored (0 = none) */
    uint64_t hold_seq;
    sh_map held;            /* temporary objects this node uses (leases), by name */
    bool temp_due;          /* leases to send once the room is live again */
} cso_room;

/* A write sent to Redis and not yet settled. */
typedef struct pending {
    struct pending *next;
    uint64_t seq;
    so_client *client;      /* NULL once it is gone */
    char *room, *name;
    size_t name_len;
    so_wire_change *keys;   /* keys only (values not kept) */
    char **kbuf;
    size_t n;
    uint32_t version;       /* the update Redis made (0 = none yet) */
    bool replied, applied;
    so_write_fn done;       /* a server write's completion (client NULL); NULL once run */
    void *done_ud;
} pending;

struct app_cluster_so {
    app_server *srv;
    app_cluster *cl;
    so_engine *eng;
    app_so_glue *glue;
    sh_map rooms;           /* cso_room by name */
    pending *pend;          /* writes in flight, newest first */
    sh_map pend_by_seq;     /* the same, by their seq (8 bytes, key in the entry) */
    uint64_t next_seq;
    size_t inflight, inflight_bytes; /* update scripts sent, not answered */
    bool holding;                    /* connections held (app_conn_hold_input) */
    so_effects fx;
    uv_timer_t retry;       /* reads again the rooms that are stale */
    uint64_t next_tick;     /* loop ms of the next lease renewal and sweep */
    bool closed;            /* retry closed (app_cluster_so_shutdown) */
    const redisReply *seeding;  /* the snapshot being applied (room_ready) */
    const char *seeding_room;
    app_cluster_so_stats st;
};

#define MAX_BUFFERED ((size_t)64 << 20) /* bytes held per room while it is read */
/* Writers are held past this in flight, read again below the low marks. */
#define INFLIGHT_HIGH_BYTES ((size_t)4 << 20)
#define INFLIGHT_LOW_BYTES ((size_t)1 << 20)
#define INFLIGHT_HIGH 8192
#define INFLIGHT_LOW 2048
#define RETRY_MS 250
#define SEED_MAX 256 /* updates of history read per object with a snapshot */

/* ---- helpers ---- */

static void deliver(app_cluster_so *cs)
{
    app_so_deliver(cs->glue, &cs->fx);
}

static void random_hex(char *out, size_t nbytes)
{
    uint8_t rnd[16];
    if (nbytes > sizeof(rnd))
        nbytes = sizeof(rnd);
    if (uv_random(NULL, NULL, rnd, nbytes, 0, NULL) != 0)
        for (size_t i = 0; i < nbytes; i++)
            rnd[i] = (uint8_t)(uv_hrtime() >> (i % 8));
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

static void buf_clear(cso_room *r)
{
    while (r->buf) {
        buf_msg *m = r->buf;
        r->buf = m->next;
        free(m);
    }
    r->buf_tail = &r->buf;
    r->nbuf = 0;
    r->hold_seq = 0;
}

/* Keeps a published message for later (at the end, or first when it goes
 * back to the front).  Returns false when the room holds too much or memory
 * ran out: the caller reads the room again. */
static bool buf_add(cso_room *r, const char *msg, size_t len, bool front)
{
    if (r->nbuf + len > MAX_BUFFERED)
        return false;
    buf_msg *m = malloc(sizeof(*m) + len);
    if (!m)
        return false;
    m->len = len;
    memcpy(m->data, msg, len);
    if (front) {
        m->next = r->buf;
        if (!r->buf)
            r->buf_tail = &m->next;
        r->buf = m;
    } else {
        m->next = NULL;
        *r->buf_tail = m;
        r->buf_tail = &m->next;
    }
    r->nbuf += len;
    return true;
}


static void room_free(cso_room *r)
{
    buf_clear(r);
    size_t it = 0;
    char *name;
    while ((name = sh_map_next(&r->held, &it)) != NULL)
        free(name);
    sh_map_cleanup(&r->held);
    free(r->name);
    free(r->prefix);
    free(r->chan);
    free(r);
}

static void pending_free(pending *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->kbuf[i]);
    free(p->kbuf);
    free(p->keys);
    free(p->room);
    free(p->name);
    free(p);
}

static pending *pending_find(const app_cluster_so *cs, uint64_t seq)
{
    return sh_map_get(&cs->pend_by_seq, &seq, sizeof(seq));
}

static void pending_unlink(app_cluster_so *cs, pending *p)
{
    sh_map_del(&cs->pend_by_seq, &p->seq, sizeof(p->seq));
    for (pending **pp = &cs->pend; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

/* Runs a server write's completion, once. */
static void finish(pending *p, int status, uint32_t version)
{
    so_write_fn fn = p->done;
    p->done = NULL;
    if (fn)
        fn(p->done_ud, status, version);
}

static void answer(app_cluster_so *cs, pending *p, const so_wire_change *keys, size_t n,
                   so_answer how)
{
    if (p->done && how != SO_ANSWER_CURRENT)
        finish(p,
               how == SO_ANSWER_SUCCESS         ? 0
               : how == SO_ANSWER_STORE_FAILED ? SH_EIO
                                               : SH_ELIMIT,
               how == SO_ANSWER_SUCCESS ? p->version : 0);
    if (!p->client || n == 0)
        return;
    so_engine_answer(cs->eng, p->client, p->name, p->name_len, keys, n, how, &cs->fx);
    deliver(cs);
}

/* ---- reading updates ---- */

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static const uint8_t *rd_take(rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}

static uint32_t rd_uint(rd *r, size_t n)
{
    const uint8_t *q = rd_take(r, n);
    uint32_t v = 0;
    for (size_t i = 0; q && i < n; i++)
        v = v << 8 | q[i];
    return v;
}

/* One decoded update: name, tag and changes point into the message. */
typedef struct update {
    uint32_t version;
    const char *name;
    size_t nlen;
    const char *tag;
    size_t tlen;
    so_wire_change *ch;
    size_t n;
} update;

/* Parses "VERSION UPDATE".  ch is allocated (free it). */
static int update_parse(const char *msg, size_t len, update *u)
{
    memset(u, 0, sizeof(*u));
    const char *sp = memchr(msg, ' ', len);
    if (!sp || sp == msg)
        return SH_EPROTO;
    unsigned long long v = 0;
    for (const char *q = msg; q < sp; q++) {
        if (*q < '0' || *q > '9' || v > UINT32_MAX)
            return SH_EPROTO;
        v = v * 10 + (unsigned)(*q - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return SH_EPROTO;
    u->version = (uint32_t)v;
    rd r = {(const uint8_t *)sp + 1, (const uint8_t *)msg + len, false};
    u->nlen = rd_uint(&r, 2);
    u->name = (const char *)rd_take(&r, u->nlen);
    u->tlen = rd_uint(&r, 2);
    u->tag = (const char *)rd_take(&r, u->tlen);
    uint32_t n = rd_uint(&r, 4);
    if (r.bad || n > (size_t)(r.end - r.p) / 7 + 1)
        return SH_EPROTO; /* each change takes at least 7 bytes */
    u->ch = calloc(n ? n : 1, sizeof(*u->ch));
    if (!u->ch)
        return SH_ENOMEM;
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        so_wire_change *c = &u->ch[i];
        c->klen = rd_uint(&r, 2);
        c->key = (const char *)rd_take(&r, c->klen);
        c->remove = rd_uint(&r, 1) == 1;
        c->vlen = rd_uint(&r, 4);
        c->value = rd_take(&r, c->vlen);
    }
    u->n = n;
    if (r.bad) {
        free(u->ch);
        u->ch = NULL;
        return SH_EPROTO;
    }
    return 0;
}

/* The proposal of ours that the tag names, if any. */
static pending *pending_of_tag(app_cluster_so *cs, const char *tag, size_t tlen)
{
    const char *id = app_cluster_node_id(cs->cl);
    size_t idlen = strlen(id);
    if (tlen <= idlen + 1 || memcmp(tag, id, idlen) != 0 || tag[idlen] != ':')
        return NULL;
    uint64_t seq = 0;
    for (size_t i = idlen + 1; i < tlen; i++) {
        if (tag[i] < '0' || tag[i] > '9')
            return NULL;
        seq = seq * 10 + (uint64_t)(tag[i] - '0');
    }
    return pending_find(cs, seq);
}

static void room_resync(app_cluster_so *cs, cso_room *r);

/* "S" u16 name length, name, SendMessage event: to this node's subscribers. */
static void send_msg(app_cluster_so *cs, cso_room *r, const char *msg, size_t len)
{
    rd q = {(const uint8_t *)msg + 1, (const uint8_t *)msg + len, false};
    size_t nlen = rd_uint(&q, 2);
    const char *name = (const char *)rd_take(&q, nlen);
    if (q.bad)
        return;
    so_engine_send_event(cs->eng, r->name, name, nlen, q.p, (size_t)(q.end - q.p), &cs->fx);
    deliver(cs);
    cs->st.messages++;
}

static void temp_msg(app_cluster_so *cs, cso_room *r, const char *msg, size_t len);

/* Applies one published update (or SendMessage) of a live room. */
static void apply_msg(app_cluster_so *cs, cso_room *r, const char *msg, size_t len)
{
    if (len > 0 && (msg[0] == 'S' || msg[0] == 's')) {
        send_msg(cs, r, msg, len);
        return;
    }
    if (len > 0 && (msg[0] == 'N' || msg[0] == 'G')) {
        temp_msg(cs, r, msg, len);
        return;
    }
    const char *whole = msg; /* kept as it came when the room waits (hold_seq) */
    size_t wlen = len;
    bool temp = len > 0 && msg[0] == 'T';
    if (temp) {
        msg++;
        len--;
    }
    update u;
    int rc = update_parse(msg, len, &u);
    if (rc < 0) {
        SH_LOG(SH_LOG_WARN, "cluster: so: room %s: unreadable update (%zu bytes) ignored",
               r->name, len);
        return;
    }
    pending *p = pending_of_tag(cs, u.tag, u.tlen);
    if (p && !p->replied && app_redis_waits(app_cluster_cmd(r->link))) {
        /* Our write, published before Redis said its replicas have it: the
         * room waits for that answer (hold_seq), so that its writer is
         * answered Success with the update only once it is stored. */
        free(u.ch);
        if (!buf_add(r, whole, wlen, true)) {
            room_resync(cs, r);
            return;
        }
        r->hold_seq = p->seq;
        return;
    }
    rc = (temp ? so_engine_apply_temp_update : so_engine_apply_update)(
        cs->eng, r->name, u.name, u.nlen, u.version, u.ch, u.n, p ? p->client : NULL, &cs->fx);
    free(u.ch);
    deliver(cs);
    if (rc == 0)
        app_so_applied(cs->glue, r->name, u.name, u.nlen);
    if (rc == 0) {
        cs->st.applied++;
        if (p) {
            p->applied = true;
            /* A server write is done once applied here.  Its completion may
             * drop the room (its last handle closed): busy keeps r, and the
             * callback that got the message forgets it (r->forget). */
            bool was_busy = r->busy;
            r->busy = true;
            finish(p, 0, u.version);
            r->busy = was_busy;
            if (p->replied) {
                pending_unlink(cs, p);
                pending_free(p);
            }
        }
    } else if (rc == SO_APPLY_GAP) {
        /* One subscription delivers in publish order: a gap means that
         * messages were lost.  Read the room again. */
        SH_LOG(SH_LOG_WARN, "cluster: so: room %s: update %u after a gap, reading the room again",
               r->name, u.version);
        room_resync(cs, r);
    } else if (rc < 0 && rc != SH_ESTATE) {
        SH_LOG(SH_LOG_WARN, "cluster: so: room %s: update %u not applied: %s", r->name,
               u.version, sh_strerror(rc));
    }
}

/* ---- temporary objects: leases ---- */

static uint64_t now_ms(const app_cluster_so *cs);
static void room_forget(app_cluster_so *cs, cso_room *r);

static void on_temp_reply(app_redis *rd_, redisReply *rep, void *ud);

typedef struct temp_req {
    app_cluster_so *cs;
    char room[];
} temp_req;

#define TEMP_BATCH 16 /* objects per lease script (EVALSHA takes 61 arguments) */

/* One lease script: the 9 arguments of hdr, then n triples of trip. */
static int temp_eval(app_cluster_so *cs, cso_room *r, const char **hdr, const size_t *hlen,
                     const char **trip, const size_t *tlen, size_t n)
{
    const char *argv[9 + 3 * TEMP_BATCH];
    size_t lens[9 + 3 * TEMP_BATCH];
    memcpy(argv, hdr, 9 * sizeof(*argv));
    memcpy(lens, hlen, 9 * sizeof(*lens));
    memcpy(argv + 9, trip, 3 * n * sizeof(*argv));
    memcpy(lens + 9, tlen, 3 * n * sizeof(*lens));
    size_t rlen = strlen(r->name);
    temp_req *q = malloc(sizeof(*q) + rlen + 1);
    if (!q)
        return SH_ENOMEM;
    q->cs = cs;
    memcpy(q->room, r->name, rlen + 1);
    int rc = app_redis_eval(app_cluster_cmd(r->link), &temp_script, on_temp_reply, q, 3,
                            (int)(9 + 3 * n), argv, lens);
    if (rc < 0)
        free(q);
    return rc;
}

/* Sends the room's lease scripts, each followed by the sweep: op ("+"
 * take, "-" give back) for the temporary object one, or, one NULL, "+" for
 * every temporary object this node uses (TEMP_BATCH per script).  Nothing
 * while the room is not live: every lease is sent once it is again (a
 * lease given back meanwhile ends by itself). */
static void temp_send(app_cluster_so *cs, cso_room *r, const char *op, const char *one)
{
    if (r->state != R_LIVE || !app_cluster_link_up(r->link)) {
        r->temp_due = true;
        return;
    }
    if (!one)
        r->temp_due = false;
    size_t n = one ? 1 : r->held.count;
    const char **trip = malloc((n ? 3 * n : 1) * sizeof(*trip));
    size_t *tlen = malloc((n ? 3 * n : 1) * sizeof(*tlen));
    char (*vers)[16] = malloc((n ? n : 1) * sizeof(*vers));
    size_t plen = strlen(r->prefix);
    char *keys = malloc(3 * (plen + 3));
    if (!trip || !tlen || !vers || !keys) {
        free(trip);
        free(tlen);
        free(vers);
        free(keys);
        r->temp_due = true; /* the next tick tries again */
        return;
    }
    uint32_t ttl = app_cluster_node_ttl_ms(cs->cl);
    char lease[16], keep[16];
    snprintf(lease, sizeof(lease), "%u", ttl);
    snprintf(keep, sizeof(keep), "%llu", 3ULL * ttl);
    const char *hdr[9];
    size_t hlen[9], k = 0;
    const char *kinds[3] = {"e", "t", "tb"};
    for (int i = 0; i < 3; i++) {
        char *kp = keys + i * (plen + 3);
        snprintf(kp, plen + 3, "%s%s", r->prefix, kinds[i]);
        hdr[k] = kp;
        hlen[k++] = strlen(kp);
    }
    const char *id = app_cluster_node_id(cs->cl);
    const char *a[6] = {r->epoch, r->prefix, r->chan, id, lease, keep};
    for (int i = 0; i < 6; i++) {
        hdr[k] = a[i];
        hlen[k++] = strlen(a[i]);
    }
    k = 0;
    size_t it = 0, j = 0;
    const char *name;
    while ((name = one ? (j ? NULL : one) : sh_map_next(&r->held, &it)) != NULL) {
        /* the version it has here, when it holds something: an object made
         * again starts above it */
        const so_object *o = so_engine_object_find(cs->eng, r->name, name);
        uint32_t v = o && (so_object_version(o) > 1 || so_object_slot_count(o))
                         ? so_object_version(o) : 0;
        snprintf(vers[j], sizeof(vers[j]), "%u", v);
        trip[k] = one ? op : "+";
        tlen[k++] = 1;
        trip[k] = name;
        tlen[k++] = strlen(name);
        trip[k] = vers[j];
        tlen[k++] = strlen(vers[j++]);
    }
    size_t done = 0;
    do { /* n == 0: one script, the sweep alone */
        size_t m = n - done < TEMP_BATCH ? n - done : TEMP_BATCH;
        if (temp_eval(cs, r, hdr, hlen, trip + 3 * done, tlen + 3 * done, m) < 0) {
            r->temp_due = true;
            break;
        }
        done += m;
    } while (done < n);
    free(trip);
    free(tlen);
    free(vers);
    free(keys);
}

static void on_temp_reply(app_redis *rd_, redisReply *rep, void *ud)
{
    (void)rd_;
    temp_req *q = ud;
    app_cluster_so *cs = q->cs;
    cso_room *r = sh_map_get(&cs->rooms, q->room, strlen(q->room));
    free(q);
    if (!r)
        return;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[0]->str, "EPOCH") == 0) {
        SH_LOG(SH_LOG_WARN, "cluster: so: room %s: Redis has another epoch, reading the "
               "room again", r->name);
        r->temp_due = true;
        room_resync(cs, r);
        return;
    }
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        SH_LOG(SH_LOG_WARN, "cluster: so: room %s: lease script: %s", r->name,
               rep ? rep->str : "no answer from Redis");
        r->temp_due = true; /* again at the next tick */
    }
}

void app_cluster_so_temp_use(app_cluster_so *cs, const char *room, const char *name,
                             bool used)
{
    cso_room *r = cs ? sh_map_get(&cs->rooms, room, strlen(room)) : NULL;
    if (!r)
        return;
    char *held = sh_map_get(&r->held, name, strlen(name));
    if (used && !held) {
        if (!(held = sh_memdup0(name, strlen(name))) ||
            sh_map_put(&r->held, held, strlen(held), held) < 0) {
            free(held); /* no lease: the object lives while others hold it */
            return;
        }
        temp_send(cs, r, "+", held);
    } else if (!used && held) {
        sh_map_del(&r->held, name, strlen(name));
        temp_send(cs, r, "-", held);
        free(held);
    }
}

/* "NVERSION NAME" (made, empty) and "GVERSION NAME" (dropped). */
static void temp_msg(app_cluster_so *cs, cso_room *r, const char *msg, size_t len)
{
    const char *sp = memchr(msg, ' ', len);
    unsigned long long v = 0;
    for (const char *q = msg + 1; sp && q < sp; q++)
        v = *q >= '0' && *q <= '9' && v <= UINT32_MAX ? v * 10 + (unsigned)(*q - '0')
                                                        : UINT64_MAX;
    if (!sp || v == 0 || v > UINT32_MAX || sp + 1 == msg + len)
        return;
    char *name = sh_memdup0(sp + 1, (size_t)(msg + len - sp - 1));
    if (!name || strlen(name) != (size_t)(msg + len - sp - 1)) {
        free(name);
        return;
    }
    /* Dropping a copy may empty the engine's room, which then leaves
     * memory (room_unloaded): busy keeps r until this function is done. */
    bool was_busy = r->busy, again = false;
    r->busy = true;
    const so_object *o = so_engine_object_find(cs->eng, r->name, name);
    if (msg[0] == 'N') {
        cs->st.temp_made++;
        /* A copy at this version or above is of an earlier life of the
         * object (this node missed its drop): forgotten when nobody uses
         * it here.  A used one with something in it: Redis made the new
         * life without this node's version, which only happens when it
         * lost the room's data (tb with it); the copy takes Redis' state,
         * its subscribers start over (Clear), as persistent objects do. */
        bool reset = false;
        if (o && !so_object_persistent(o) && so_object_version(o) >= v &&
            so_engine_temp_drop(cs->eng, r->name, name) == SH_ESTATE)
            reset = so_object_version(o) > v || so_object_slot_count(o) > 0;
        o = so_engine_object_find(cs->eng, r->name, name);
        if (!o || reset || (!so_object_persistent(o) && so_object_version(o) < v))
            so_engine_temp_sync(cs->eng, r->name, name, (uint32_t)v, NULL, reset, &cs->fx);
        deliver(cs);
    } else {
        cs->st.temp_gone++;
        /* Still used here (this node's lease ran out, or it is being
         * taken): take it again, which makes the object again. */
        again = o && !so_object_persistent(o) &&
                so_engine_temp_drop(cs->eng, r->name, name) == SH_ESTATE;
    }
    free(name);
    r->busy = was_busy;
    if (!was_busy && r->forget)
        room_forget(cs, r);
    else if (again)
        temp_send(cs, r, NULL, NULL);
}

/* Where the temporary objects start in a snapshot reply (the index of the
 * marker entry), or rep->elements. */
static size_t temp_start(const redisReply *rep)
{
    for (size_t i = 1; i + 3 < rep->elements; i += 4) {
        const redisReply *nm = rep->element[i];
        if (nm->type == REDIS_REPLY_STRING && nm->len == 0)
            return i;
    }
    return rep->elements;
}

/* The temporary objects of a snapshot reply: each one made or brought to
 * Redis' state (reset: its subscribers start over); copies Redis no longer
 * has are forgotten, or taken again when used here (temp_send). */
static void temp_apply(app_cluster_so *cs, cso_room *r, const redisReply *rep, bool reset)
{
    sh_map names;
    sh_map_init(&names);
    for (size_t i = temp_start(rep) + 4; i + 3 < rep->elements; i += 4) {
        const redisReply *nm = rep->element[i], *ver = rep->element[i + 1],
                         *slots = rep->element[i + 2];
        long long v = 0;
        if (nm->type != REDIS_REPLY_STRING || !app_redis_reply_int(ver, &v) || v < 1 ||
            v > UINT32_MAX || slots->type != REDIS_REPLY_ARRAY || slots->elements % 3)
            continue;
        so_store_batch *img = so_store_batch_new(0);
        int rc = img ? 0 : SH_ENOMEM;
        for (size_t j = 0; rc == 0 && j < slots->elements; j += 3) {
            const redisReply *k = slots->element[j], *val = slots->element[j + 1];
            long long sv = 0;
            if (k->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING ||
                !app_redis_reply_int(slots->element[j + 2], &sv))
                rc = SH_EPROTO;
            else
                rc = so_store_batch_add(img, SO_STORE_SET, r->name, nm->str, k->str, k->len,
                                        (uint32_t)sv, (const uint8_t *)val->str, val->len);
        }
        const so_object *o = so_engine_object_find(cs->eng, r->name, nm->str);
        if (rc == 0 && (!o || !so_object_persistent(o))) {
            bool back = o && so_object_version(o) > (uint32_t)v;
            so_engine_temp_sync(cs->eng, r->name, nm->str, (uint32_t)v, img, reset || back,
                                &cs->fx);
            (void)sh_map_put(&names, nm->str, nm->len, img);
        }
        so_store_batch_free(img);
    }
    size_t it = 0, nn = 0;
    so_object *o;
    char **gone = NULL;
    while ((o = so_engine_object_next(cs->eng, r->name, &it)) != NULL) {
        const char *nm = so_object_name(o);
        if (so_object_persistent(o) || !so_object_clustered(o) ||
            sh_map_get(&names, nm, strlen(nm)))
            continue;
        char **nx = realloc(gone, (nn + 1) * sizeof(*gone));
        if (nx && (nx[nn] = sh_memdup0(nm, strlen(nm))) != NULL)
            nn++;
        if (nx)
            gone = nx;
    }
    sh_map_cleanup(&names);
    for (size_t i = 0; i < nn; i++) {
        /* used here: kept, and taken again (temp_send) */
        (void)so_engine_temp_drop(cs->eng, r->name, gone[i]);
        free(gone[i]);
    }
    free(gone);
    deliver(cs);
}

/* ---- snapshots ---- */

static void room_forget(app_cluster_so *cs, cso_room *r)
{
    if (app_cluster_of(cs->srv))
        app_redis_unsubscribe(app_cluster_sub(r->link), r->chan, strlen(r->chan));
    sh_map_del(&cs->rooms, r->name, strlen(r->name));
    room_free(r);
}

static uint64_t now_ms(const app_cluster_so *cs)
{
    return uv_now(app_server_loop(cs->srv));
}

/* A load that cannot be done: what waited for it gets StoreFailed (the
 * engine's answer to a failed load), and the room is forgotten. */
static void load_give_up(app_cluster_so *cs, cso_room *r, const char *why)
{
    SH_LOG(SH_LOG_WARN, "cluster: so: cannot load room %s: %s", r->name, why);
    r->loading = false;
    so_engine_room_loaded(cs->eng, r->name, SH_EIO, NULL, &cs->fx);
    deliver(cs);
    room_forget(cs, r);
}

/* The room could not be read.  A loaded room is read again when it can
 * be (READY, or the retry timer).  A load keeps waiting for the link until
 * its deadline ([cluster] timeout_ms after it was asked), then fails: a
 * node that has just started, or a link that is coming back, does not
 * refuse its first clients, and a Redis that stays away does not keep
 * them waiting. */
static void snapshot_failed(app_cluster_so *cs, cso_room *r, const char *why)
{
    r->state = R_STALE;
    buf_clear(r);
    if (r->loading && now_ms(cs) >= r->load_deadline)
        load_give_up(cs, r, why); /* r is gone */
}

/* Settles the writes Redis confirmed whose published update this node
 * did not see (the link dropped in between): a snapshot read after the
 * confirmation has them, so Success; unless Redis lost them since (a new
 * epoch, or the version is not there): StoreFailed.  No write stays
 * unanswered. */
static void settle_after_sync(app_cluster_so *cs, cso_room *r, bool reset)
{
    pending **pp = &cs->pend;
    while (*pp) {
        pending *p = *pp;
        if (!p->replied || p->applied || !p->version || strcmp(p->room, r->name) != 0) {
            pp = &p->next;
            continue;
        }
        const so_object *o = so_engine_object_find(cs->eng, r->name, p->name);
        bool have = !reset && o && so_object_version(o) >= p->version;
        *pp = p->next;
        sh_map_del(&cs->pend_by_seq, &p->seq, sizeof(p->seq));
        if (!have)
            cs->st.failed++;
        answer(cs, p, p->keys, p->n, have ? SO_ANSWER_SUCCESS : SO_ANSWER_STORE_FAILED);
        pending_free(p);
    }
}

/* Seeds the history of the room's objects that have none (just loaded, or
 * reset) from the stream entries of a snapshot reply, so a client coming
 * back with a recent version gets a diff.  Best effort: an object whose
 * entries do not end at its version keeps no history. */
static void seed_history(app_cluster_so *cs, const cso_room *r, const redisReply *rep)
{
    for (size_t i = 1; i + 3 < rep->elements; i += 4) {
        const redisReply *nm = rep->element[i], *hist = rep->element[i + 3];
        if (nm->type != REDIS_REPLY_STRING || hist->type != REDIS_REPLY_ARRAY ||
            hist->elements < 2 || hist->elements % 2)
            continue;
        size_t n = hist->elements / 2;
        so_hist_entry *h = calloc(n, sizeof(*h));
        const char **keys = NULL;
        size_t *klens = NULL, nk = 0, at = 0;
        for (size_t j = 0; j < n; j++) {
            const redisReply *ks = hist->element[2 * j + 1];
            nk += ks->type == REDIS_REPLY_ARRAY ? ks->elements : 0;
        }
        keys = calloc(nk ? nk : 1, sizeof(*keys));
        klens = calloc(nk ? nk : 1, sizeof(*klens));
        bool ok = h && keys && klens;
        for (size_t j = 0; ok && j < n; j++) {
            /* newest first in the reply; oldest first for the engine */
            const redisReply *v = hist->element[2 * (n - 1 - j)];
            const redisReply *ks = hist->element[2 * (n - 1 - j) + 1];
            long long ver = 0;
            ok = app_redis_reply_int(v, &ver) && ver > 0 && ver <= UINT32_MAX &&
                 ks->type == REDIS_REPLY_ARRAY;
            if (!ok)
                break;
            h[j] = (so_hist_entry){.version = (uint32_t)ver, .nkeys = ks->elements,
                                   .keys = keys + at, .klens = klens + at};
            for (size_t k = 0; k < ks->elements; k++, at++) {
                const redisReply *key = ks->element[k];
                keys[at] = key->type == REDIS_REPLY_STRING ? key->str : "";
                klens[at] = key->type == REDIS_REPLY_STRING ? key->len : 0;
            }
        }
        if (ok)
            (void)so_engine_object_seed_history(cs->eng, r->name, nm->str, h, n);
        free(h);
        free(keys);
        free(klens);
    }
}

/* so_hooks.room_ready: the room's objects are made from the snapshot
 * being applied; their history is seeded before waiting Uses are answered. */
void app_cluster_so_room_ready(app_cluster_so *cs, const char *room)
{
    cso_room *r = cs ? sh_map_get(&cs->rooms, room, strlen(room)) : NULL;
    if (r && cs->seeding && strcmp(cs->seeding_room, room) == 0) {
        temp_apply(cs, r, cs->seeding, false);
        seed_history(cs, r, cs->seeding);
    }
}

/* Applies a snapshot reply to a room.  Returns 0 or an error. */
static int snapshot_apply(app_cluster_so *cs, cso_room *r, const redisReply *rep)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
        rep->element[0]->type != REDIS_REPLY_STRING || (rep->elements - 1) % 4 != 0)
        return SH_EPROTO;
    const char *epoch = rep->element[0]->str;
    so_store_batch *img = so_store_batch_new(0);
    if (!img)
        return SH_ENOMEM;
    int rc = 0;
    size_t tstart = temp_start(rep);
    for (size_t i = 1; rc == 0 && i + 3 < tstart; i += 4) {
        const redisReply *nm = rep->element[i], *ver = rep->element[i + 1],
                         *slots = rep->element[i + 2];
        long long v = 0;
        if (nm->type != REDIS_REPLY_STRING || !app_redis_reply_int(ver, &v) || v < 1 ||
            v > UINT32_MAX || slots->type != REDIS_REPLY_ARRAY || slots->elements % 3) {
            rc = SH_EPROTO;
            break;
        }
        rc = so_store_batch_add(img, SO_STORE_OBJECT, r->name, nm->str, NULL, 0, (uint32_t)v,
                                NULL, 0);
        for (size_t j = 0; rc == 0 && j < slots->elements; j += 3) {
            const redisReply *k = slots->element[j], *val = slots->element[j + 1];
            long long sv = 0;
            if (k->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING ||
                !app_redis_reply_int(slots->element[j + 2], &sv)) {
                rc = SH_EPROTO;
                break;
            }
            rc = so_store_batch_add(img, SO_STORE_SET, r->name, nm->str, k->str, k->len,
                                    (uint32_t)sv, (const uint8_t *)val->str, val->len);
        }
    }
    if (rc < 0) {
        so_store_batch_free(img);
        return rc;
    }
    cs->st.snapshots++;
    r->was_reset = false;
    /* The room's epoch from now on: the writes that waited for the load
     * are proposed from inside so_engine_room_loaded, with it. */
    char old[sizeof(r->epoch)];
    snprintf(old, sizeof(old), "%s", r->epoch);
    snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
    if (r->loading) {
        r->loading = false;
        /* what waited for the load is replayed in there, and may propose
         * at once (server opens: API writes, samples): with this epoch */
        snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
        cs->seeding = rep;
        cs->seeding_room = r->name;
        rc = so_engine_room_loaded(cs->eng, r->name, 0, img, &cs->fx);
        cs->seeding = NULL;
        r->loaded = rc == 0;
    } else if (so_engine_room_info(cs->eng, r->name, &(so_room_info){0})) {
        bool reset = *old && strcmp(old, epoch) != 0;
        r->was_reset = reset;
        if (reset) {
            cs->st.resets++;
            SH_LOG(SH_LOG_WARN, "cluster: so: room %s: epoch %s -> %s: Redis lost the room's "
                   "data (restarted without persistence, or a failover); its clients get "
                   "the whole state again", r->name, old, epoch);
        }
        sh_map names; /* objects of the snapshot */
        sh_map_init(&names);
        for (size_t i = 0; i < img->nops; i++) {
            if (img->ops[i].kind != SO_STORE_OBJECT)
                continue;
            (void)sh_map_put(&names, img->ops[i].name, strlen(img->ops[i].name), img);
            /* the object's ops: its row, then its slots, up to the next row */
            size_t j = i + 1;
            while (j < img->nops && img->ops[j].kind != SO_STORE_OBJECT)
                j++;
            so_store_batch view = {.ops = img->ops + i, .nops = j - i};
            const so_object *o = so_engine_object_find(cs->eng, r->name, img->ops[i].name);
            bool back = !reset && o && so_object_version(o) > img->ops[i].version;
            if (back)
                /* Same epoch, older version: Redis lost acknowledged writes
                 * (appendfsync everysec or no, a failover). */
                SH_LOG(SH_LOG_WARN, "cluster: so: room %s: object %s went back from version "
                       "%u to %u in Redis (it lost writes): its clients get the whole state "
                       "again", r->name, img->ops[i].name, so_object_version(o),
                       img->ops[i].version);
            so_engine_object_sync(cs->eng, r->name, img->ops[i].name, img->ops[i].version,
                                  &view, reset || back, &cs->fx);
        }
        {
            /* Objects Redis no longer has (a new epoch, or lost writes):
             * empty, version 1.  One never written here is that already. */
            size_t it = 0;
            so_object *o;
            char **gone = NULL;
            size_t nn = 0;
            while ((o = so_engine_object_next(cs->eng, r->name, &it)) != NULL) {
                if (!so_object_persistent(o) || (!reset && so_object_version(o) <= 1))
                    continue;
                bool have = sh_map_get(&names, so_object_name(o), strlen(so_object_name(o)));
                char **nx = have ? gone : realloc(gone, (nn + 1) * sizeof(*gone));
                if (!have && nx) {
                    gone = nx;
                    gone[nn++] = sh_memdup0(so_object_name(o), strlen(so_object_name(o)));
                }
            }
            for (size_t i = 0; i < nn; i++) {
                if (gone[i] && !reset)
                    SH_LOG(SH_LOG_WARN, "cluster: so: room %s: object %s is gone from Redis "
                           "(it lost writes): its clients get the whole state again", r->name,
                           gone[i]);
                if (gone[i])
                    so_engine_object_sync(cs->eng, r->name, gone[i], 1, NULL, true, &cs->fx);
                free(gone[i]);
            }
            free(gone);
        }
        sh_map_cleanup(&names);
        temp_apply(cs, r, rep, reset);
        seed_history(cs, r, rep); /* the objects that were reset */
        r->loaded = true;
    }
    deliver(cs);
    so_store_batch_free(img);
    return rc;
}

static void on_snapshot(app_redis *rd_, redisReply *rep, void *ud);

typedef struct snap_req {
    app_cluster_so *cs;
    char *room;
    uint64_t gen;
} snap_req;

static void room_read(app_cluster_so *cs, cso_room *r)
{
    r->state = R_SNAPSHOT;
    r->snap_gen++;
    char epoch[33];
    random_hex(epoch, 16);
    char ekey[600], okey[600], tkey[600];
    snprintf(ekey, sizeof(ekey), "%se", r->prefix);
    snprintf(okey, sizeof(okey), "%so", r->prefix);
    snprintf(tkey, sizeof(tkey), "%st", r->prefix);
    char hist[16];
    snprintf(hist, sizeof(hist), "%u", r->history < SEED_MAX ? r->history : SEED_MAX);
    const char *argv[6] = {ekey, okey, tkey, epoch, r->prefix, hist};
    size_t lens[6] = {strlen(ekey), strlen(okey), strlen(tkey), strlen(epoch),
                      strlen(r->prefix), strlen(hist)};
    snap_req *q = calloc(1, sizeof(*q));
    if (q && !(q->room = sh_memdup0(r->name, strlen(r->name)))) {
        free(q);
        q = NULL;
    }
    if (!q) {
        snapshot_failed(cs, r, "out of memory");
        return;
    }
    q->cs = cs;
    q->gen = r->snap_gen;
    int rc = app_redis_eval(app_cluster_cmd(r->link), &snapshot_script, on_snapshot, q, 3, 6,
                            argv, lens);
    if (rc < 0) {
        free(q->room);
        free(q);
        snapshot_failed(cs, r, sh_strerror(rc));
    }
}

/* Applies the buffered messages of a live room, in order, until one waits
 * for Redis' answer again (hold_seq). */
static void room_drain(app_cluster_so *cs, cso_room *r)
{
    while (r->buf && r->state == R_LIVE && !r->forget && !r->hold_seq) {
        buf_msg *m = r->buf;
        r->buf = m->next;
        if (!r->buf)
            r->buf_tail = &r->buf;
        r->nbuf -= m->len;
        apply_msg(cs, r, m->data, m->len);
        free(m);
    }
}

static void on_snapshot(app_redis *rd_, redisReply *rep, void *ud)
{
    (void)rd_;
    snap_req *q = ud;
    app_cluster_so *cs = q->cs;
    cso_room *r = sh_map_get(&cs->rooms, q->room, strlen(q->room));
    bool current = r && r->snap_gen == q->gen && r->state == R_SNAPSHOT;
    free(q->room);
    free(q);
    if (!current)
        return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        snapshot_failed(cs, r, !rep ? "no answer from Redis" : rep->str);
        return;
    }
    /* Live from now on: the writes that waited for the room's load are
     * replayed inside snapshot_apply and may be proposed at once.  The
     * engine may drop the room in there (nobody left in it): busy keeps r
     * until this function is done with it. */
    r->state = R_LIVE;
    r->busy = true;
    int rc = snapshot_apply(cs, r, rep);
    if (rc == 0) {
        room_drain(cs, r); /* what was published after the snapshot, in order */
        settle_after_sync(cs, r, r->was_reset);
    }
    r->busy = false;
    if (r->forget)
        room_forget(cs, r);
    else if (rc < 0)
        snapshot_failed(cs, r, sh_strerror(rc));
    else if (r->held.count || r->temp_due)
        temp_send(cs, r, NULL, NULL); /* this node's leases, taken again (or first) */
}

/* Reads the room again (now when subscribed, else at READY); meanwhile
 * messages are buffered and writes refused. */
static void room_resync(app_cluster_so *cs, cso_room *r)
{
    buf_clear(r);
    if (r->sub_ready && app_cluster_link_up(r->link))
        room_read(cs, r);
    else
        r->state = R_STALE;
}

/* ---- subscriptions ---- */

/* The subscription's ud is the room: it is unsubscribed before the room
 * is freed, and app_redis never calls a dropped subscription. */
static void on_sub(app_redis *rd_, app_redis_sub_event ev, const char *msg, size_t len,
                   void *ud)
{
    (void)rd_;
    cso_room *r = ud;
    app_cluster_so *cs = r->cs;
    switch (ev) {
    case APP_REDIS_SUB_READY:
        r->sub_ready = true;
        /* Subscribed: what is published from now on arrives, so the
         * snapshot read now misses nothing. */
        buf_clear(r);
        room_read(cs, r);
        break;
    case APP_REDIS_SUB_LOST:
        r->sub_ready = false;
        if (r->state == R_SNAPSHOT || r->loading) {
            r->snap_gen++; /* its answer, if any, is of no use */
            snapshot_failed(cs, r, "the Redis link was lost");
            return;          /* r may be gone */
        }
        r->state = R_STALE;  /* writes refused until read again */
        buf_clear(r);
        break;
    case APP_REDIS_SUB_MESSAGE:
        if (r->state == R_LIVE && !r->hold_seq) {
            /* the message may drop the room (a server write's completion,
             * a temporary object made or dropped): busy keeps r */
            bool was_busy = r->busy;
            r->busy = true;
            apply_msg(cs, r, msg, len);
            r->busy = was_busy;
            if (r->forget && !r->busy)
                room_forget(cs, r);
        } else if (r->state == R_SNAPSHOT || r->state == R_LIVE) {
            /* read, or waiting for our write's answer: kept in order; too
             * much (the read or the answer takes too long): read again */
            if (!buf_add(r, msg, len, false)) {
                room_resync(cs, r);
                return;
            }
        }
        break;
    }
}

/* ---- the engine's hooks ---- */

/* The Redis link of room "app/instance", NULL when its application is not
 * clustered (or its name is longer than an application's can be). */
static app_cluster_link *room_link(app_cluster_so *cs, const char *room)
{
    size_t alen = so_store_app_len(room);
    char app[APP_NAME_MAX + 1];
    if (alen > APP_NAME_MAX)
        return NULL;
    memcpy(app, room, alen);
    app[alen] = '\0';
    return app_cluster_link_for(cs->cl, app);
}

bool app_cluster_so_room_clustered(app_cluster_so *cs, const char *room)
{
    return cs && room_link(cs, room) != NULL;
}

static cso_room *room_new(app_cluster_so *cs, const char *room)
{
    app_cluster_link *link = room_link(cs, room);
    if (!link)
        return NULL;
    cso_room *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cs = cs;
    r->link = link;
    size_t n = strlen(room);
    r->name = sh_memdup0(room, n);
    r->prefix = malloc(n + 7);
    r->chan = malloc(n + 6);
    if (!r->name || !r->prefix || !r->chan) {
        room_free(r);
        return NULL;
    }
    snprintf(r->prefix, n + 7, "so:{%s}:", room);
    snprintf(r->chan, n + 6, "so:{%s}", room);
    r->buf_tail = &r->buf;
    sh_map_init(&r->held);
    const app_app_config *ac = app_config_find_room_app(app_server_config(cs->srv), room);
    r->history = ac && ac->history_depth ? ac->history_depth : SO_DEFAULT_HISTORY_DEPTH;
    if (sh_map_put(&cs->rooms, r->name, n, r) < 0) {
        room_free(r);
        return NULL;
    }
    return r;
}

void app_cluster_so_load_room(app_cluster_so *cs, const char *room)
{
    cso_room *r = sh_map_get(&cs->rooms, room, strlen(room));
    if (!r && !(r = room_new(cs, room))) {
        so_engine_room_loaded(cs->eng, room, SH_ENOMEM, NULL, &cs->fx);
        deliver(cs);
        return;
    }
    r->loading = true;
    r->loaded = false;
    r->load_deadline = now_ms(cs) + app_server_config(cs->srv)->cluster_timeout_ms;
    if (r->sub_ready && app_cluster_link_up(r->link)) {
        buf_clear(r);
        room_read(cs, r);
        return;
    }
    r->state = R_WAIT_SUB;
    if (app_redis_subscribe(app_cluster_sub(r->link), r->chan, strlen(r->chan), on_sub, r) < 0)
        snapshot_failed(cs, r, "out of memory");
}

void app_cluster_so_room_unloaded(app_cluster_so *cs, const char *room)
{
    cso_room *r = sh_map_get(&cs->rooms, room, strlen(room));
    if (r && r->busy)
        r->forget = true; /* from inside so_engine_room_loaded: r is in use */
    else if (r && !r->loading)
        room_forget(cs, r);
}

void app_cluster_so_client_gone(app_cluster_so *cs, so_client *c)
{
    for (pending *p = cs ? cs->pend : NULL; p; p = p->next)
        if (p->client == c)
            p->client = NULL;
}

static void on_update_reply(app_redis *rd_, redisReply *rep, void *ud);

int app_cluster_so_propose_send(app_cluster_so *cs, const char *room, const char *name,
                                size_t nlen, const uint8_t *ev, size_t len)
{
    cso_room *r = sh_map_get(&cs->rooms, room, strlen(room));
    if (!r || r->state != R_LIVE || !app_cluster_link_up(r->link) || nlen > UINT16_MAX)
        return SH_ESTATE; /* this node's subscribers only */
    const so_object *o = so_engine_object_find(cs->eng, room, name);
    char *msg = malloc(3 + nlen + len);
    if (!msg)
        return SH_ENOMEM;
    msg[0] = o && !so_object_persistent(o) ? 's' : 'S';
    msg[1] = (char)(nlen >> 8);
    msg[2] = (char)(nlen & 0xff);
    memcpy(msg + 3, name, nlen);
    memcpy(msg + 3 + nlen, ev, len);
    const char *argv[3] = {"PUBLISH", r->chan, msg};
    size_t lens[3] = {7, strlen(r->chan), 3 + nlen + len};
    int rc = app_redis_cmd(app_cluster_cmd(r->link), NULL, NULL, 3, argv, lens);
    free(msg);
    return rc;
}

typedef struct prop_req {
    app_cluster_so *cs;
    uint64_t seq;
    size_t bytes;           /* what the script carries (back-pressure) */
} prop_req;

/* The pending entry of a proposal: its keys copied for the answers. */
static pending *pending_new(app_cluster_so *cs, const so_proposal *p)
{
    pending *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->seq = ++cs->next_seq;
    q->client = p->client;
    q->done = p->client ? NULL : p->done;
    q->done_ud = p->done_ud;
    q->room = sh_memdup0(p->room, strlen(p->room));
    q->name = sh_memdup0(p->name, p->name_len);
    q->name_len = p->name_len;
    q->keys = calloc(p->n ? p->n : 1, sizeof(*q->keys));
    q->kbuf = calloc(p->n ? p->n : 1, sizeof(*q->kbuf));
    bool ok = q->room && q->name && q->keys && q->kbuf;
    for (size_t i = 0; ok && i < p->n; i++) {
        ok = (q->kbuf[i] = sh_memdup0(p->changes[i].key, p->changes[i].klen)) != NULL;
        q->keys[i] = (so_wire_change){.key = q->kbuf[i], .klen = p->changes[i].klen};
        q->n = i + 1;
    }
    if (!ok) {
        pending_free(q);
        return NULL;
    }
    return q;
}

int app_cluster_so_propose(app_cluster_so *cs, const so_proposal *p)
{
    cso_room *r = sh_map_get(&cs->rooms, p->room, strlen(p->room));
    if (!r || r->state != R_LIVE || !app_cluster_link_up(r->link))
        return SH_ESTATE; /* out of sync or unreachable: StoreFailed now */
    if (p->n > 20000)
        return SH_ELIMIT;
    const so_object *obj = so_engine_object_find(cs->eng, p->room, p->name);
    bool temp = obj && !so_object_persistent(obj);
    bool quota = !temp && (p->max_objects || p->max_bytes);
    int nkeys = temp || quota ? 6 : 5;
    pending *q = pending_new(cs, p);
    prop_req *pr = malloc(sizeof(*pr));
    size_t argc = 6 + 10 + 3 * p->n + 3;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    /* up to six keys of at most PREFIX + "tm:" + NAME each */
    char *keys = malloc(6 * (strlen(r->prefix) + p->name_len + 4));
    if (!q || !pr || !argv || !lens || !keys) {
        if (q)
            pending_free(q);
        free(pr);
        free(argv);
        free(lens);
        free(keys);
        return SH_ENOMEM;
    }
    /* KEYS */
    size_t plen = strlen(r->prefix), at = 0, k = 0;
    char *kp = keys;
    const char *kinds[6] = {"e", "o", "s:", "m:", "x:", ""};
    const char *tkinds[6] = {"e", "t", "ts:", "tm:", "tx:", "tl:"};
    /* the application's usage: "sohub:quota:{LEN:APP}", as chat's user keys */
    char qkey[APP_NAME_MAX + 40];
    size_t alen = so_store_app_len(p->room);
    int ql = snprintf(qkey, sizeof(qkey), "sohub:quota:{%zu:%.*s}", alen, (int)alen, p->room);
    for (int i = 0; i < nkeys; i++) {
        if (i == 5 && quota) {
            argv[k] = qkey;
            lens[k++] = ql > 0 && (size_t)ql < sizeof(qkey) ? (size_t)ql : 0;
            break;
        }
        if (temp)
            kinds[i] = tkinds[i];
        size_t kl = strlen(kinds[i]);
        char *start = kp;
        memcpy(kp, r->prefix, plen);
        kp += plen;
        memcpy(kp, kinds[i], kl);
        kp += kl;
        if (i >= 2) {
            memcpy(kp, p->name, p->name_len);
            kp += p->name_len;
        }
        argv[k] = start;
        lens[k++] = (size_t)(kp - start);
    }
    (void)at;
    /* ARGV */
    char base[16], hist[16], tag[64], nstr[16], writer[64], expect[16];
    snprintf(base, sizeof(base), "%u", p->base_version);
    snprintf(hist, sizeof(hist), "%u", r->history);
    snprintf(tag, sizeof(tag), "%s:%llu", app_cluster_node_id(cs->cl),
             (unsigned long long)q->seq);
    snprintf(nstr, sizeof(nstr), "%zu", p->n);
    /* the server writes as client 0 of its node (rule 3: so.h) */
    snprintf(writer, sizeof(writer), "%s:%llu", app_cluster_node_id(cs->cl),
             (unsigned long long)(p->client ? so_client_id(p->client) : 0));
    snprintf(expect, sizeof(expect), "%u", p->client ? 0 : p->expect_version);
    const char *a[10] = {r->epoch, p->name, base, writer,
                         p->conflict == SO_CONFLICT_LWW ? "l" : "r", r->chan, hist, tag, nstr,
                         expect};
    size_t al[10] = {strlen(r->epoch), p->name_len, strlen(base), strlen(writer), 1,
                     strlen(r->chan), strlen(hist), strlen(tag), strlen(nstr), strlen(expect)};
    for (int i = 0; i < 10; i++) {
        argv[k] = a[i];
        lens[k++] = al[i];
    }
    for (size_t i = 0; i < p->n; i++) {
        argv[k] = p->changes[i].key;
        lens[k++] = p->changes[i].klen;
        argv[k] = p->changes[i].remove ? "r" : "s";
        lens[k++] = 1;
        argv[k] = p->changes[i].remove ? "" : (const char *)p->changes[i].value;
        lens[k++] = p->changes[i].remove ? 0 : p->changes[i].vlen;
    }
    char qo[24], qb[24];
    snprintf(qo, sizeof(qo), "%llu", (unsigned long long)(quota ? p->max_objects : 0));
    snprintf(qb, sizeof(qb), "%llu", (unsigned long long)(quota ? p->max_bytes : 0));
    argv[k] = temp ? "t" : p->client ? "p" : "w";
    lens[k++] = 1;
    argv[k] = qo;
    lens[k++] = strlen(qo);
    argv[k] = qb;
    lens[k++] = strlen(qb);
    pr->cs = cs;
    pr->seq = q->seq;
    pr->bytes = 0;
    for (size_t i = 0; i < k; i++)
        pr->bytes += lens[i];
    int rc = sh_map_put(&cs->pend_by_seq, &q->seq, sizeof(q->seq), q);
    if (rc == 0) {
        q->next = cs->pend;
        cs->pend = q;
        rc = app_redis_eval(app_cluster_cmd(r->link), &update_script, on_update_reply, pr,
                            nkeys, (int)k, argv, lens);
        if (rc < 0)
            pending_unlink(cs, q);
    }
    free(argv);
    free(lens);
    free(keys);
    if (rc < 0) {
        free(pr);
        pending_free(q); /* its completion is not run: the caller hears rc */
        return rc;
    }
    cs->st.proposals++;
    /* Back-pressure: a client that writes faster than Redis takes it would
     * queue scripts until the oldest waits past timeout_ms, and the link
     * would be dropped for everyone.  Past a few MB in flight the writer's
     * connection is not read until Redis caught up. */
    cs->inflight_bytes += pr->bytes;
    cs->inflight++;
    if ((cs->inflight_bytes > INFLIGHT_HIGH_BYTES || cs->inflight > INFLIGHT_HIGH) &&
        p->client) {
        app_conn_hold_input(so_client_user(p->client));
        cs->holding = true;
    }
    return 0;
}

static void update_settle(app_cluster_so *cs, pending *p, const redisReply *rep);

static void on_update_reply(app_redis *rd_, redisReply *rep, void *ud)
{
    (void)rd_;
    prop_req *pr = ud;
    app_cluster_so *cs = pr->cs;
    pending *p = pending_find(cs, pr->seq);
    cs->inflight_bytes -= pr->bytes;
    cs->inflight--;
    free(pr);
    if (cs->holding && cs->inflight_bytes <= INFLIGHT_LOW_BYTES &&
        cs->inflight <= INFLIGHT_LOW) {
        cs->holding = false;
        app_server_release_input(cs->srv);
    }
    if (!p)
        return;
    cso_room *r = sh_map_get(&cs->rooms, p->room, strlen(p->room));
    bool held = r && r->hold_seq == p->seq;
    /* a server write's completion may drop the room: busy keeps r */
    bool was_busy = r && r->busy;
    if (r)
        r->busy = true;
    update_settle(cs, p, rep);
    if (held && r->hold_seq && !r->forget) {
        /* the room waited for this answer: its updates go on, this one
         * first (with the writer's Success when it was stored) */
        r->hold_seq = 0;
        room_drain(cs, r);
    }
    if (r)
        r->busy = was_busy;
    if (r && !was_busy && r->forget)
        room_forget(cs, r);
}

/* Answers the writer of p from Redis' answer to its script (NULL: none). */
static void update_settle(app_cluster_so *cs, pending *p, const redisReply *rep)
{
    long long v = -1;
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
              rep->element[0]->type == REDIS_REPLY_STRING &&
              strcmp(rep->element[0]->str, "OK") == 0 &&
              app_redis_reply_int(rep->element[1], &v) && v >= 0 && v <= UINT32_MAX;
    long long cur = 0;
    if (!ok && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[0]->str, "CAS") == 0 && app_redis_reply_int(rep->element[1], &cur) &&
        cur >= 0 && cur <= UINT32_MAX) {
        /* a compare-and-set that found another version: nothing written */
        cs->st.cas_failed++;
        pending_unlink(cs, p);
        finish(p, SH_EEXIST, (uint32_t)cur);
        pending_free(p);
        return;
    }
    if (!ok) {
        cso_room *r = sh_map_get(&cs->rooms, p->room, strlen(p->room));
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(rep->element[0]->str, "EPOCH") == 0 && r) {
            SH_LOG(SH_LOG_WARN, "cluster: so: room %s: Redis has another epoch, reading the "
                   "room again", r->name);
            room_resync(cs, r);
        } else if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                   rep->element[0]->type == REDIS_REPLY_STRING &&
                   strcmp(rep->element[0]->str, "GONE") == 0 && r) {
            /* a temporary object Redis dropped (this node's lease ran
             * out): taken again, and made again by Redis */
            temp_send(cs, r, NULL, NULL);
        } else if (rep && rep->type == REDIS_REPLY_ERROR) {
            SH_LOG(SH_LOG_WARN, "cluster: so: room %s: update script: %s", p->room, rep->str);
        }
        pending_unlink(cs, p);
        if (!p->applied) {
            /* Not known to be stored.  After a time-out it may have been:
             * then its Change comes later, as any other update. */
            cs->st.failed++;
            answer(cs, p, p->keys, p->n, SO_ANSWER_STORE_FAILED);
        }
        pending_free(p);
        return;
    }
    /* the keys Redis refused get their current value: stale (rule 3),
     * or past a quota (with its Status) */
    size_t nref = rep->elements - 2, nst = 0;
    so_wire_change *st = nref ? calloc(nref, sizeof(*st)) : NULL;
    for (int pass = 0; pass < 3 && st; pass++) {
        /* 0: stale keys, 1: objects quota, 2: bytes quota */
        size_t m = 0;
        for (size_t i = 0; i < nref; i++) {
            const redisReply *k = rep->element[2 + i];
            int kind = k->type == REDIS_REPLY_STRING ? 0
                       : k->type == REDIS_REPLY_ARRAY && k->elements == 2 &&
                               k->element[0]->type == REDIS_REPLY_STRING &&
                               k->element[1]->type == REDIS_REPLY_STRING
                           ? (k->element[1]->str[0] == 'o' ? 1 : 2)
                           : -1;
            if (kind != pass)
                continue;
            const redisReply *key = kind ? k->element[0] : k;
            st[m++] = (so_wire_change){.key = key->str, .klen = key->len};
        }
        if (pass == 0)
            nst = m;
        else
            cs->st.over_quota += m;
        if (m)
            answer(cs, p, st, m,
                   pass == 0   ? SO_ANSWER_CURRENT
                   : pass == 1 ? SO_ANSWER_LIMIT_OBJECTS
                               : SO_ANSWER_LIMIT_BYTES);
    }
    cs->st.stale += nst;
    free(st);
    p->version = (uint32_t)v;
    p->replied = true;
    const so_object *o = v ? so_engine_object_find(cs->eng, p->room, p->name) : NULL;
    if (!p->applied && o && so_object_version(o) >= p->version) {
        /* a snapshot read since brought the update (its message was missed) */
        answer(cs, p, p->keys, p->n, SO_ANSWER_SUCCESS);
        p->applied = true;
    }
    if (v == 0 || p->applied) {
        pending_unlink(cs, p);
        finish(p, 0, (uint32_t)v); /* v == 0: nothing was left to write */
        pending_free(p);
    }
}

/* ---- link state ---- */

static void on_link_state(app_cluster_link *l, bool up, void *ud)
{
    app_cluster_so *cs = ud;
    if (up)
        return; /* each room is read again at its subscription's READY */
    size_t it = 0;
    cso_room *r;
    while ((r = sh_map_next(&cs->rooms, &it)) != NULL)
        if (r->link == l && r->state == R_LIVE) {
            r->state = R_STALE; /* writes refused from now on */
            buf_clear(r);
        }
}

/* Every third of node_ttl_ms: the leases of this node are renewed, and
 * the rooms that have temporary objects are swept (the objects whose
 * holders all died are dropped). */
static void temp_tick(app_cluster_so *cs)
{
    size_t it = 0;
    cso_room *r;
    while ((r = sh_map_next(&cs->rooms, &it)) != NULL) {
        if (r->state != R_LIVE)
            continue;
        bool any = r->held.count || r->temp_due;
        size_t oi = 0;
        const so_object *o;
        while (!any && (o = so_engine_object_next(cs->eng, r->name, &oi)) != NULL)
            any = !so_object_persistent(o) && so_object_clustered(o);
        if (any)
            temp_send(cs, r, NULL, NULL);
    }
}

/* Rooms whose read failed while subscribed are read again; loads past
 * their deadline fail.  The rooms are picked first (by name): acting on
 * one may forget it. */
static void on_retry(uv_timer_t *t)
{
    app_cluster_so *cs = t->data;
    size_t it = 0, n = 0;
    cso_room *r;
    char *todo[64];
    uint64_t now = now_ms(cs);
    while ((r = sh_map_next(&cs->rooms, &it)) != NULL && n < 64) {
        bool late = r->loading && now >= r->load_deadline && r->state != R_SNAPSHOT;
        bool again = r->state == R_STALE && r->sub_ready && app_cluster_link_up(r->link);
        if ((late || again) && (todo[n] = sh_memdup0(r->name, strlen(r->name))) != NULL)
            n++;
    }
    for (size_t i = 0; i < n; i++) {
        r = sh_map_get(&cs->rooms, todo[i], strlen(todo[i]));
        if (r && r->loading && now >= r->load_deadline && r->state != R_SNAPSHOT)
            load_give_up(cs, r, "Redis is not reachable");
        else if (r && r->state == R_STALE && r->sub_ready && app_cluster_link_up(r->link))
            room_read(cs, r);
        free(todo[i]);
    }
    if (now >= cs->next_tick) {
        cs->next_tick = now + app_cluster_node_ttl_ms(cs->cl) / 3;
        temp_tick(cs);
    }
}

/* ---- life ---- */

app_cluster_so *app_cluster_so_new(app_server *srv, so_engine *e, app_so_glue *g)
{
    app_cluster *cl = app_cluster_of(srv);
    if (!cl)
        return NULL;
    if (!scripts_ready) {
        app_redis_script_init(&update_script, "so-update", update_src);
        update_script.acks = true;
        app_redis_script_init(&snapshot_script, "so-snapshot", snapshot_src);
        app_redis_script_init(&temp_script, "so-temp", temp_src);
        scripts_ready = true;
    }
    app_cluster_so *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->srv = srv;
    cs->cl = cl;
    cs->eng = e;
    cs->glue = g;
    so_effects_init(&cs->fx);
    if (app_cluster_add_script(cl, &update_script) < 0 ||
        app_cluster_add_script(cl, &snapshot_script) < 0 ||
        app_cluster_add_script(cl, &temp_script) < 0 ||
        app_cluster_on_state(cl, on_link_state, cs) < 0) {
        free(cs);
        return NULL;
    }
    uv_timer_init(app_server_loop(srv), &cs->retry);
    cs->retry.data = cs;
    uv_timer_start(&cs->retry, on_retry, RETRY_MS, RETRY_MS);
    uv_unref((uv_handle_t *)&cs->retry);
    return cs;
}

void app_cluster_so_shutdown(app_cluster_so *cs)
{
    if (cs && !cs->closed) {
        cs->closed = true;
        uv_close((uv_handle_t *)&cs->retry, NULL);
    }
}

void app_cluster_so_free(app_cluster_so *cs)
{
    if (!cs)
        return;
    size_t it = 0;
    cso_room *r;
    while ((r = sh_map_next(&cs->rooms, &it)) != NULL)
        room_free(r);
    sh_map_cleanup(&cs->rooms);
    while (cs->pend) {
        pending *p = cs->pend;
        cs->pend = p->next;
        finish(p, SH_ESTATE, 0); /* a server write still waiting: the server stops */
        pending_free(p);
    }
    sh_map_cleanup(&cs->pend_by_seq);
    so_effects_cleanup(&cs->fx);
    free(cs);
}

void app_cluster_so_get_stats(const app_cluster_so *cs, app_cluster_so_stats *st)
{
    *st = cs ? cs->st : (app_cluster_so_stats){0};
}
