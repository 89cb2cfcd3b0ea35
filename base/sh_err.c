#include "sh_err.h"

const char *sh_strerror(int code)
{
    switch (code) {
    case SH_OK: return "success";
    case SH_EMORE: return "need more input";
    case SH_EPROTO: return "protocol error";
    case SH_ELIMIT: return "limit exceeded";
    case SH_ENOMEM: return "out of memory";
    case SH_EINVAL: return "invalid argument";
    case SH_EIO: return "I/O error";
    case SH_ESTATE: return "invalid state";
    case SH_ENOTFOUND: return "not found";
    case SH_EDENIED: return "access denied";
    case SH_EEXIST: return "already exists";
    case SH_EUNSUPPORTED: return "unsupported";
    default: return "unknown error";
    }
}

int sh_error_set(sh_error *e, int code, const char *what, const char *where,
                 size_t offset)
{
    if (e) {
        e->code = code;
        e->what = what;
        e->where = where;
        e->offset = offset;
    }
    return code;
}
