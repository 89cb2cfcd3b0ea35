/* test_fuzz_regress.c - replays the fuzz seeds and crash reproducers.
 *
 * For every target of fuzz/ one test runs the harness (compiled here
 * without libFuzzer, see meson.build) on each file of
 * fuzz/corpus/<target>/ and tests/data/fuzz-regress/<target>/.  A harness
 * aborts on a broken property and the sanitizers abort on memory errors,
 * so a test passes only when every stored input runs clean.  The
 * reproducer files are named after what they found (see
 * tests/data/fuzz-regress/README).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* fr_targets.h is written by meson.build from fuzz_targets: one
 * FR_TARGET(name) line per target. */
#define FR_TARGET(t) int fr_##t(const uint8_t *data, size_t size);
#include "fr_targets.h"
#undef FR_TARGET

typedef int (*harness_fn)(const uint8_t *data, size_t size);

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    cr_assert(buf != NULL);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert(buf != NULL);
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs fn on every regular file of dir (sorted); returns how many. */
static size_t replay_dir(const char *dir, harness_fn fn)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[4096];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 4096) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "README") == 0)
            continue;
        names[n] = strdup(de->d_name);
        cr_assert(names[n] != NULL);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_str);
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            size_t len = 0;
            uint8_t *data = read_all(path, &len);
            /* printed first so a crash names its input in the log */
            fprintf(stderr, "replay %s\n", path);
            cr_assert_eq(fn(data, len), 0, "%s", path);
            free(data);
            ran++;
        }
        free(names[i]);
    }
    return ran;
}

static void replay(const char *target, harness_fn fn)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", FUZZ_SOURCE_ROOT, target);
    size_t seeds = replay_dir(dir, fn);
    cr_expect_gt(seeds, 0, "no seeds for %s in %s", target, dir);
    snprintf(dir, sizeof(dir), "%s/tests/data/fuzz-regress/%s", FUZZ_SOURCE_ROOT, target);
    replay_dir(dir, fn);
    /* the empty input and a one-byte input are valid inputs of every target */
    static const uint8_t one[1] = {0};
    cr_assert_eq(fn(one, 0), 0);
    cr_assert_eq(fn(one, 1), 0);
}

#define FR_TARGET(t) \
    Test(fuzz_regress, t, .timeout = 120) { replay(#t, fr_##t); }
#include "fr_targets.h"
