/* amf_bench.c - micro benchmark of the AMF codec on typical shared-object
 * payloads: a chat message {from, text, ts, id} and an auction item (typed
 * object with a date), in AMF0 and AMF3.  Each case decodes (one decoder,
 * reset per value, as per RTMP message) and encodes (one encoder, reset per
 * value) in a loop and prints values/s and MB/s.  The whole run takes about
 * SECONDS (default 2), split evenly over the 8 loops.
 *
 * usage: amf-bench [SECONDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "amf.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static amf_value *chat(void)
{
    amf_value *o = amf_object_new(NULL);
    amf_object_set_cstr(o, "from", amf_string_cstr("alice"));
    amf_object_set_cstr(o, "text", amf_string_cstr("hello everyone, the auction starts in five minutes"));
    amf_object_set_cstr(o, "ts", amf_number(1700000000123.0));
    amf_object_set_cstr(o, "id", amf_integer(4242));
    return o;
}

static amf_value *auction(void)
{
    amf_value *o = amf_object_new("com.example.AuctionItem");
    amf_object_set_cstr(o, "id", amf_integer(1001));
    amf_object_set_cstr(o, "title", amf_string_cstr("Blue vase, 19th century"));
    amf_object_set_cstr(o, "price", amf_number(125.5));
    amf_object_set_cstr(o, "bids", amf_integer(17));
    amf_object_set_cstr(o, "leader", amf_string_cstr("bob"));
    amf_object_set_cstr(o, "ends", amf_date(1700003600000.0, 0));
    amf_value *tags = amf_strict_array_new();
    amf_array_push(tags, amf_string_cstr("ceramics"));
    amf_array_push(tags, amf_string_cstr("antique"));
    amf_object_set_cstr(o, "tags", tags);
    return o;
}

static void report(const char *what, const char *name, const char *enc, double secs,
                   unsigned long n, size_t bytes)
{
    printf("%-6s %-8s %-4s %10.0f values/s %8.1f MB/s  (%zu bytes/value)\n", what, name, enc,
           (double)n / secs, (double)n * (double)bytes / secs / 1e6, bytes);
}

static int run(const char *name, amf_value *v, amf_encoding enc, double secs)
{
    const char *en = enc == AMF_ENC_AMF0 ? "amf0" : "amf3";
    sh_buf b;
    sh_buf_init(&b, 0);
    if (amf_encode1(enc, v, &b))
        return 1;
    size_t len = b.len;

    amf_dec *d = amf_dec_new(NULL);
    unsigned long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            amf_value *out;
            size_t used;
            amf_dec_reset(d);
            if (amf_decode(d, enc, b.data, len, &used, &out, NULL))
                return 1;
            amf_unref(out);
        }
        n += 1000;
    } while ((t = now()) - t0 < secs);
    report("decode", name, en, t - t0, n, len);
    amf_dec_free(d);

    amf_enc *e = amf_enc_new();
    sh_buf o;
    sh_buf_init(&o, 0);
    n = 0;
    t0 = now();
    do {
        for (int i = 0; i < 1000; i++) {
            amf_enc_reset(e);
            sh_buf_reset(&o);
            if (amf_encode(e, enc, v, &o))
                return 1;
        }
        n += 1000;
    } while ((t = now()) - t0 < secs);
    report("encode", name, en, t - t0, n, len);
    amf_enc_free(e);
    sh_buf_cleanup(&o);
    sh_buf_cleanup(&b);
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    if (!(secs > 0))
        secs = 2.0;
    secs /= 8;
    amf_value *c = chat(), *a = auction();
    int rc = run("chat", c, AMF_ENC_AMF0, secs) || run("chat", c, AMF_ENC_AMF3, secs) ||
             run("auction", a, AMF_ENC_AMF0, secs) || run("auction", a, AMF_ENC_AMF3, secs);
    amf_unref(c);
    amf_unref(a);
    if (rc)
        fprintf(stderr, "amf-bench: codec error\n");
    return rc;
}
