/* cli_util.c - small helpers shared by sohub-cli commands. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char *cli_read_all(const char *path, size_t *len)
{
    FILE *f = (!path || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (cap - n < 2) {
            char *q = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!q) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = q;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int hexdigit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cli_hex_decode(const char *text, size_t len, uint8_t **out, size_t *out_len, size_t *bad_at)
{
    uint8_t *b = malloc(len / 2 + 1);
    if (!b) {
        *bad_at = 0;
        return -1;
    }
    size_t n = 0, half_at = 0;
    int half = -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
            continue;
        int d = hexdigit(c);
        if (d < 0) {
            free(b);
            *bad_at = i;
            return -1;
        }
        if (half < 0) {
            half = d;
            half_at = i;
        } else {
            b[n++] = (uint8_t)(half << 4 | d);
            half = -1;
        }
    }
    if (half >= 0) {
        free(b);
        *bad_at = half_at;
        return -1;
    }
    *out = b;
    *out_len = n;
    return 0;
}

void cli_hex_write(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}
