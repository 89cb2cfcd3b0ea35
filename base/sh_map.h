/* sh_map.h - the hash map of sohub: one implementation for every table.
 *
 * Keys are byte strings (any bytes, NUL included) or pointers (compared by
 * identity); values are non-NULL pointers.  Many keys come from peers: slot,
 * object and room names, user names, the strings of AMF values.  With an
 * unkeyed hash a client can compute offline keys that all land in one probe
 * run, and then every insert walks the whole run (quadratic work for the
 * server).  So keys are hashed with SipHash-1-3 (Aumasson and Bernstein's
 * keyed PRF) under a 128-bit secret seed: without the seed, colliding keys
 * cannot be chosen.  base/ draws no random numbers; the process sets the
 * seed once at start (sohub-server: app/main.c with bytes from getrandom),
 * tests and fuzzers set their own, and a process that never sets it hashes
 * with the all-zero seed (deterministic, fine for tools that only talk to
 * our own server).
 *
 * A map takes the seed in force when it allocates its first table and keeps
 * it while it has one, so sh_hash_set_seed never disturbs a map in use.
 *
 * Layout: open addressing, linear probing, power-of-two capacity, at most
 * 3/4 full, backward-shift deletion (no tombstones: after a delete the table
 * is as if the key had never been inserted, so probe runs do not rot).
 * Tables of 8 and 16 slots are not hashed: their up to 12 entries sit in
 * the first slots and a lookup compares them all (lengths first), which
 * costs about what one SipHash does and is bounded, so there is nothing to
 * flood.  The 13th entry moves them into a hashed table of 32.  Most maps
 * (an object's slots, the AMF encoder's tables for one message) stay that
 * small.
 *
 * Ownership: the map owns only its table.  Keys are borrowed: the map keeps
 * the pointer and length, so the caller keeps the key bytes alive and
 * unchanged while the entry is in the map (usually they live inside the
 * value).  Values are borrowed and never freed by the map.
 *
 * One map holds byte keys (sh_map_get / _put / _del) or pointer keys
 * (sh_map_get_ptr / _put_ptr / _del_ptr), never both.  Integer values go in
 * through sh_map_box / sh_map_unbox.
 *
 * Iteration (sh_map_next) visits every entry once, in table order, which
 * depends on the seed once the map is hashed.  The map must not change
 * during it; to remove entries while walking, use sh_map_sweep.
 */
#ifndef SH_MAP_H
#define SH_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sets the seed of every map allocated from now on.  Call it once at start,
 * before any map is used, with 16 bytes from the system's random source. */
void sh_hash_set_seed(const uint8_t seed[16]);

/* SipHash-1-3 of p[0..n) under key (16 bytes, little-endian halves as in
 * the paper).  Exposed for tests; maps use it internally. */
uint64_t sh_siphash13(const uint8_t key[16], const void *p, size_t n);

typedef struct sh_map_ent {
    const void *key;    /* bytes, or the key itself for pointer keys */
    void *val;          /* NULL: empty slot */
    uint32_t klen;
    uint32_t hash;      /* low half of the key's SipHash */
} sh_map_ent;

typedef struct sh_map {
    sh_map_ent *ents;   /* private */
    size_t cap;         /* private: power of two, or 0 before the first put */
    size_t count;       /* read-only: entries in the map */
    size_t probes;      /* read-only: slots examined by put and del so far
                           (tests check that inserts stay O(1) each) */
    uint64_t k0, k1;    /* private: the seed taken at allocation */
} sh_map;

/* A zeroed sh_map is an empty map; init is the same as zeroing. */
void sh_map_init(sh_map *m);
/* Frees the table; the map is empty and usable again. */
void sh_map_cleanup(sh_map *m);
/* Removes every entry.  Costs O(count): a large table left mostly empty
 * (by a burst that is over) is freed instead of wiped. */
void sh_map_clear(sh_map *m);

/* The value of key[0..klen), or NULL. */
void *sh_map_get(const sh_map *m, const void *key, size_t klen);
/* Inserts or replaces.  The key is borrowed (see above); val must not be
 * NULL.  0, SH_ENOMEM (the map is unchanged) or SH_EINVAL (klen above
 * UINT32_MAX). */
int sh_map_put(sh_map *m, const void *key, size_t klen, void *val);
/* Removes key and returns its value, or NULL when it is absent. */
void *sh_map_del(sh_map *m, const void *key, size_t klen);
/* The value of key when it is present; otherwise inserts key with val (as
 * sh_map_put) and returns NULL, *rc saying whether that worked.  One hash
 * for the lookup and the insert. */
void *sh_map_get_or_put(sh_map *m, const void *key, size_t klen, void *val, int *rc);

/* The same for pointer keys (identity, not the bytes pointed to). */
void *sh_map_get_ptr(const sh_map *m, const void *key);
int sh_map_put_ptr(sh_map *m, const void *key, void *val);
void *sh_map_del_ptr(sh_map *m, const void *key);
void *sh_map_get_or_put_ptr(sh_map *m, const void *key, void *val, int *rc);

/* Iteration: for (size_t i = 0; (v = sh_map_next(m, &i)) != NULL;) ... */
void *sh_map_next(const sh_map *m, size_t *iter);

/* Calls drop(val, ctx) once for every entry and removes the entries for
 * which it returns true.  drop may free the value and its key (the map does
 * not look at a removed entry again) but must not otherwise change the map.
 * Returns the number removed. */
size_t sh_map_sweep(sh_map *m, bool (*drop)(void *val, void *ctx), void *ctx);

/* Integers as values: x + 1, so that 0 is storable and NULL still means
 * absent.  x must be below UINTPTR_MAX. */
static inline void *sh_map_box(uintptr_t x) { return (void *)(x + 1); }
static inline uintptr_t sh_map_unbox(const void *v) { return (uintptr_t)v - 1; }

#endif
