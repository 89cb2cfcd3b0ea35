/* sh_err.h - error codes shared by every sohub module.
 *
 * Every function that can fail returns 0 (or a non-negative count) on
 * success and one of the negative codes below on failure.  SH_EMORE is not
 * an error: a sans-I/O decoder returns it when the input ends before a
 * complete unit, and the caller feeds more bytes later.
 *
 * Decoders that reject peer input also fill an sh_error with a static
 * description and the place in our code that found the problem, so logs can
 * say exactly why a peer was closed.
 */
#ifndef SH_ERR_H
#define SH_ERR_H

#include <stddef.h>

enum {
    SH_OK = 0,
    SH_EMORE = -1,     /* need more input bytes (not an error) */
    SH_EPROTO = -2,    /* malformed peer input */
    SH_ELIMIT = -3,    /* a configured limit was passed */
    SH_ENOMEM = -4,    /* allocation failed */
    SH_EINVAL = -5,    /* bad argument from our own caller */
    SH_EIO = -6,       /* I/O or storage failure */
    SH_ESTATE = -7,    /* operation not valid in the current state */
    SH_ENOTFOUND = -8, /* no such object, key, user ... */
    SH_EDENIED = -9,   /* access denied */
    SH_EEXIST = -10,   /* already exists / conflicts */
    SH_EUNSUPPORTED = -11, /* valid but unsupported input */
};

/* Returns a static English description of an SH_E* code. */
const char *sh_strerror(int code);

/* Details of the last failure of a decoder.  `what` and `where` point to
 * static strings; `offset` is the byte offset in the input that was being
 * decoded when the problem was found. */
typedef struct sh_error {
    int code;
    const char *what;
    const char *where;
    size_t offset;
} sh_error;

#define SH_STR2(x) #x
#define SH_STR(x) SH_STR2(x)
#define SH_HERE __FILE__ ":" SH_STR(__LINE__)

/* Records an error in *e (which may be NULL) and evaluates to `code`. */
#define SH_FAIL(e, code_, what_, off_) \
    sh_error_set((e), (code_), (what_), SH_HERE, (off_))

int sh_error_set(sh_error *e, int code, const char *what, const char *where,
                 size_t offset);

#endif
