#include "sh_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"

int sh_array_grow(void **p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : (first ? first : 1);
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (elem && n > SIZE_MAX / elem)
        return SH_ENOMEM;
    void *q = realloc(*p, n * elem);
    if (!q)
        return SH_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

char *sh_memdup0(const void *p, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *d = malloc(n + 1);
    if (d) {
        if (n)
            memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}
