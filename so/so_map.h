/* so_map.h - private string-keyed hash map of the engine.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones).  Keys are borrowed: the caller keeps the key bytes alive
 * as long as the entry (the engine points them into the value it stores).
 * Deleting while iterating is not allowed.
 */
#ifndef SO_MAP_H
#define SO_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct so_map_ent {
    const char *key;
    size_t klen;
    uint32_t hash;
    void *val;          /* NULL = empty entry */
} so_map_ent;

typedef struct so_map {
    so_map_ent *ents;
    size_t cap;         /* power of two or 0 */
    size_t count;
} so_map;

void so_map_init(so_map *m);
void so_map_cleanup(so_map *m);
void *so_map_get(const so_map *m, const char *key, size_t klen);
/* Inserts or replaces (val must not be NULL).  0 or SH_ENOMEM. */
int so_map_put(so_map *m, const char *key, size_t klen, void *val);
/* Removes and returns the value (NULL when absent). */
void *so_map_del(so_map *m, const char *key, size_t klen);
/* Iteration: for (i = 0; (v = so_map_next(m, &i)) != NULL;) ... */
void *so_map_next(const so_map *m, size_t *iter);

#endif
