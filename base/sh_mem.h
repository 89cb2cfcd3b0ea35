/* sh_mem.h - small allocation helpers shared by the modules.
 *
 * sh_array_grow is the one place that doubles a dynamic array, with the
 * size arithmetic checked for overflow.  Callers check their own caps
 * (limits from the network) BEFORE asking for room: this only allocates.
 */
#ifndef SH_MEM_H
#define SH_MEM_H

#include <stddef.h>

/* Makes room for at least `need` elements of `elem` bytes in *p, whose
 * capacity is *cap elements: doubles, starting at `first`.  Returns 0 or
 * SH_ENOMEM (then *p and *cap are unchanged). */
int sh_array_grow(void **p, size_t *cap, size_t need, size_t elem, size_t first);

/* Returns a NUL-terminated copy of p[0..n) (owned; free()), NULL on ENOMEM. */
char *sh_memdup0(const void *p, size_t n);

#endif
