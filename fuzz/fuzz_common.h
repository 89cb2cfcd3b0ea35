/* fuzz_common.h - helpers shared by the libFuzzer targets in fuzz/.
 *
 * Every target defines LLVMFuzzerTestOneInput(data, size).  The same
 * source files are also compiled WITHOUT libFuzzer into the regression
 * test (tests/fuzz_regress), with LLVMFuzzerTestOneInput renamed by a
 * -D flag, so a reproducer stored under tests/data/fuzz-regress/<target>/
 * runs in every `meson test` (and under the sanitizers in CI).
 *
 * A harness reports a broken property (not a sanitizer finding) with
 * FZ_CHECK, which prints the place and aborts: libFuzzer then keeps the
 * input as a crash file.
 *
 * fz_in is a bounded cursor over the fuzzer's bytes used to draw small
 * decisions (split points, client numbers, modes).  It never fails: once
 * the input is exhausted it returns zeros, so every input is a valid
 * script.
 *
 * Nothing here calls sh_hash_set_seed: hash tables use the all-zero seed,
 * so a stored reproducer replays with the same table layout every time.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond)                                                        \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz property failed at %s:%d: %s\n", __FILE__,  \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

typedef struct fz_in {
    const uint8_t *p;
    const uint8_t *end;
} fz_in;

static inline void fz_init(fz_in *in, const uint8_t *p, size_t n)
{
    in->p = p;
    in->end = p + n;
}

static inline size_t fz_left(const fz_in *in) { return (size_t)(in->end - in->p); }

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->p == in->end)
        return 0;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)(hi << 8 | fz_u8(in));
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t hi = fz_u16(in);
    return hi << 16 | fz_u16(in);
}

/* Takes up to n bytes (fewer when the input ends); *got tells how many. */
static inline const uint8_t *fz_take(fz_in *in, size_t n, size_t *got)
{
    size_t left = fz_left(in);
    if (n > left)
        n = left;
    const uint8_t *p = in->p;
    in->p += n;
    *got = n;
    return p;
}

/* Copies `n` bytes into a fresh heap block of exactly that size, so an
 * over-read by one byte lands outside the allocation and ASan reports it
 * (libFuzzer's own buffer has that property, but sub-slices do not). */
static inline uint8_t *fz_dup(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q)
        abort();
    if (n)
        memcpy(q, p, n);
    return q;
}

#endif
