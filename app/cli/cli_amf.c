/* cli_amf.c - `sohub-cli amf decode|encode`: AMF bytes <-> JSON lines.
 *
 * decode: reads AMF bytes (binary, or hex text with --hex) from FILE or
 * stdin and prints each value as one line of JSON (docs/amf-json.md).
 * encode: reads JSON values (one per line, or any stream of JSON values)
 * and writes their encoding (binary, or one hex line per value with --hex).
 * One decoder / encoder context covers the whole input, as for one RTMP
 * message body.  Bad input: a message naming the offset on stderr, exit 1.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "amf.h"
#include "amf_json.h"
#include "cli.h"

typedef struct amf_opts {
    amf_encoding enc;
    bool hex;
    const char *file;
} amf_opts;

static void amf_usage(FILE *f)
{
    fprintf(f,
            "usage: sohub-cli amf decode [--amf0|--amf3] [--hex] [FILE]\n"
            "       sohub-cli amf encode [--amf0|--amf3] [--hex] [FILE]\n"
            "\n"
            "decode prints each AMF value of the input as one line of JSON;\n"
            "encode reads JSON values and writes their AMF encoding.\n"
            "--amf0 (default) or --amf3 selects the encoding; --hex reads or\n"
            "writes hex text (whitespace ignored) instead of binary.\n"
            "FILE defaults to standard input.  The JSON form of values that\n"
            "plain JSON cannot carry is described in docs/amf-json.md.\n");
}

static int parse_opts(int argc, char **argv, amf_opts *o)
{
    o->enc = AMF_ENC_AMF0;
    o->hex = false;
    o->file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--amf0"))
            o->enc = AMF_ENC_AMF0;
        else if (!strcmp(argv[i], "--amf3"))
            o->enc = AMF_ENC_AMF3;
        else if (!strcmp(argv[i], "--hex"))
            o->hex = true;
        else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "sohub-cli amf: unknown option '%s'\n", argv[i]);
            return -1;
        } else if (o->file) {
            fprintf(stderr, "sohub-cli amf: more than one FILE\n");
            return -1;
        } else
            o->file = argv[i];
    }
    return 0;
}

static char *read_input(const amf_opts *o, size_t *len)
{
    char *text = cli_read_all(o->file, len);
    if (!text)
        fprintf(stderr, "sohub-cli amf: cannot read %s: %s\n", o->file ? o->file : "stdin",
                strerror(errno));
    return text;
}

static int amf_decode_cmd(const amf_opts *o)
{
    size_t tlen;
    char *text = read_input(o, &tlen);
    if (!text)
        return 1;
    const uint8_t *buf = (const uint8_t *)text;
    uint8_t *bytes = NULL;
    size_t len = tlen;
    if (o->hex) {
        size_t bad_at;
        if (cli_hex_decode(text, tlen, &bytes, &len, &bad_at)) {
            fprintf(stderr, "sohub-cli amf decode: offset %zu of the hex text: not a hex digit pair\n",
                    bad_at);
            free(text);
            return 1;
        }
        buf = bytes;
    }
    amf_dec *d = amf_dec_new(NULL);
    int status = d ? 0 : 1;
    size_t off = 0;
    while (d && off < len) {
        size_t used = 0;
        amf_value *v = NULL;
        sh_error err = {0, NULL, NULL, 0};
        int rc = amf_decode(d, o->enc, buf + off, len - off, &used, &v, &err);
        if (rc == SH_EMORE) {
            fprintf(stderr, "sohub-cli amf decode: offset %zu: truncated value (input ends at byte %zu)\n",
                    off, len);
            status = 1;
            break;
        }
        if (rc) {
            fprintf(stderr, "sohub-cli amf decode: offset %zu: %s (%s)\n", off + err.offset,
                    err.what ? err.what : "bad input", sh_strerror(rc));
            status = 1;
            break;
        }
        char *js = amf_json_print(v);
        amf_unref(v);
        if (!js) {
            fprintf(stderr,
                    "sohub-cli amf decode: offset %zu: value cannot be printed (out of memory, "
                    "or more than %zu JSON values once shared parts are expanded)\n",
                    off, AMF_JSON_MAX_NODES);
            status = 1;
            break;
        }
        puts(js);
        free(js);
        off += used;
    }
    amf_dec_free(d);
    free(bytes);
    free(text);
    return status;
}

static size_t skip_ws(const char *t, size_t i, size_t n)
{
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

static int amf_encode_cmd(const amf_opts *o)
{
    size_t n;
    char *text = read_input(o, &n);
    if (!text)
        return 1;
    amf_enc *e = amf_enc_new();
    sh_buf out;
    sh_buf_init(&out, 0);
    int status = e ? 0 : 1;
    size_t off = skip_ws(text, 0, n);
    while (e && off < n) {
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(text + off, n - off, &end, 0);
        if (!j) {
            const char *at = cJSON_GetErrorPtr();
            size_t where = at && at >= text + off && at <= text + n ? (size_t)(at - text) : off;
            fprintf(stderr, "sohub-cli amf encode: offset %zu: invalid JSON\n", where);
            status = 1;
            break;
        }
        amf_value *v = NULL;
        const char *why = NULL;
        int rc = amf_json_to_value(j, &v, &why, NULL);
        cJSON_Delete(j);
        if (rc) {
            fprintf(stderr, "sohub-cli amf encode: value at offset %zu: %s\n", off, why);
            status = 1;
            break;
        }
        sh_buf_reset(&out);
        rc = amf_encode(e, o->enc, v, &out);
        amf_unref(v);
        if (rc) {
            fprintf(stderr, "sohub-cli amf encode: value at offset %zu: cannot encode (%s)\n", off,
                    sh_strerror(rc));
            status = 1;
            break;
        }
        if (o->hex) {
            cli_hex_write(stdout, out.data, out.len);
            putchar('\n');
        } else if (out.len) {
            fwrite(out.data, 1, out.len, stdout);
        }
        off = skip_ws(text, (size_t)(end - text), n);
    }
    sh_buf_cleanup(&out);
    amf_enc_free(e);
    free(text);
    if (fflush(stdout) != 0)
        status = 1;
    return status;
}

int cli_amf_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        amf_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    amf_opts o;
    if (parse_opts(argc - 2, argv + 2, &o)) {
        amf_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "decode"))
        return amf_decode_cmd(&o);
    if (!strcmp(argv[1], "encode"))
        return amf_encode_cmd(&o);
    fprintf(stderr, "sohub-cli amf: unknown subcommand '%s'\n", argv[1]);
    amf_usage(stderr);
    return 2;
}
