/* amf.h - AMF0 and AMF3 values, decoder and encoder (sans-I/O).
 *
 * One value model (amf_value) represents everything both formats can carry,
 * losslessly: a value decoded from AMF0 or AMF3 and encoded again in the
 * same format gives the same meaning (and, for input our encoder would have
 * produced, the same bytes).
 *
 * Ownership: values are reference counted and single-threaded.  A function
 * that returns amf_value * returns an owned reference unless its comment
 * says "borrowed".  Functions that take a value to store it "take" the
 * caller's reference.  amf_unref(NULL) is fine.  A value that is shared
 * (refcount > 1) must not be modified.  AMF0 object references and AMF3
 * object and string references decode to the SAME amf_value (one more
 * reference), so the graph of the input is kept; cycles (an object that contains a
 * reference to itself) are refused by the decoder with SH_EUNSUPPORTED,
 * because reference counting could never free them.
 *
 * Decoding never allocates from a count or length the input claims before
 * checking it against the limits and against the bytes actually present,
 * and never builds more memory than its budget (max_memory): a reference
 * in the input costs one pointer, never a copy of what it refers to
 * (AMF3 strings are shared values too), and every block the decoder
 * allocates is counted before it is allocated.
 */
#ifndef AMF_H
#define AMF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sh_buf.h"
#include "sh_err.h"

/* AMF0 markers (amf0-file-format-specification, section 2.1). */
enum {
    AMF0_NUMBER = 0x00, AMF0_BOOLEAN = 0x01, AMF0_STRING = 0x02,
    AMF0_OBJECT = 0x03, AMF0_MOVIECLIP = 0x04, AMF0_NULL = 0x05,
    AMF0_UNDEFINED = 0x06, AMF0_REFERENCE = 0x07, AMF0_ECMA_ARRAY = 0x08,
    AMF0_OBJECT_END = 0x09, AMF0_STRICT_ARRAY = 0x0A, AMF0_DATE = 0x0B,
    AMF0_LONG_STRING = 0x0C, AMF0_UNSUPPORTED = 0x0D, AMF0_RECORDSET = 0x0E,
    AMF0_XML_DOCUMENT = 0x0F, AMF0_TYPED_OBJECT = 0x10, AMF0_AVMPLUS = 0x11,
};

/* AMF3 markers (amf-file-format-spec, section 3.1). */
enum {
    AMF3_UNDEFINED = 0x00, AMF3_NULL = 0x01, AMF3_FALSE = 0x02,
    AMF3_TRUE = 0x03, AMF3_INTEGER = 0x04, AMF3_DOUBLE = 0x05,
    AMF3_STRING = 0x06, AMF3_XML_DOC = 0x07, AMF3_DATE = 0x08,
    AMF3_ARRAY = 0x09, AMF3_OBJECT = 0x0A, AMF3_XML = 0x0B,
    AMF3_BYTE_ARRAY = 0x0C, AMF3_VECTOR_INT = 0x0D, AMF3_VECTOR_UINT = 0x0E,
    AMF3_VECTOR_DOUBLE = 0x0F, AMF3_VECTOR_OBJECT = 0x10,
    AMF3_DICTIONARY = 0x11,
};

typedef enum amf_encoding {
    AMF_ENC_AMF0 = 0,
    AMF_ENC_AMF3 = 3,
} amf_encoding;

typedef enum amf_type {
    AMF_UNDEFINED,
    AMF_NULL,
    AMF_BOOLEAN,
    AMF_NUMBER,        /* double */
    AMF_INTEGER,       /* AMF3 29-bit signed integer */
    AMF_STRING,        /* UTF-8 bytes (AMF0 string and long string, AMF3 string) */
    AMF_XML_DOCUMENT,  /* AMF0 XML document, AMF3 XMLDocument (legacy) */
    AMF_XML,           /* AMF3 XML (E4X) */
    AMF_DATE,          /* milliseconds since the epoch (+ AMF0 time zone) */
    AMF_OBJECT,        /* anonymous, typed, dynamic, sealed or externalizable */
    AMF_ECMA_ARRAY,    /* AMF0 associative array; AMF3 array with assoc part */
    AMF_STRICT_ARRAY,  /* AMF0 strict array; AMF3 array, dense part only */
    AMF_BYTE_ARRAY,    /* AMF3 ByteArray */
    AMF_VECTOR_INT,
    AMF_VECTOR_UINT,
    AMF_VECTOR_DOUBLE,
    AMF_VECTOR_OBJECT,
    AMF_DICTIONARY,    /* AMF3 Dictionary: value keys -> values */
    AMF_UNSUPPORTED,   /* AMF0 unsupported marker */
} amf_type;

typedef struct amf_value amf_value;

/* ---- construction (each returns an owned reference, NULL on ENOMEM) ---- */
amf_value *amf_undefined(void);
amf_value *amf_null(void);
amf_value *amf_bool(bool b);
amf_value *amf_number(double d);
amf_value *amf_integer(int32_t i);            /* clamps nothing; caller keeps 29-bit range */
amf_value *amf_string(const char *s, size_t n); /* copies */
amf_value *amf_string_cstr(const char *s);      /* copies */
amf_value *amf_date(double ms, int16_t tz_minutes);
amf_value *amf_object_new(const char *class_name); /* NULL or "" = anonymous */
amf_value *amf_ecma_array_new(void);
amf_value *amf_strict_array_new(void);

/* Object / ECMA array members, in insertion order.  Setting an existing key
 * replaces its value.  Takes the reference to v (also on failure). */
int amf_object_set(amf_value *obj, const char *key, size_t key_len, amf_value *v);
int amf_object_set_cstr(amf_value *obj, const char *key, amf_value *v);
/* Borrowed; NULL when absent or obj is not an object / ECMA array. */
amf_value *amf_object_get(const amf_value *obj, const char *key);
size_t amf_object_count(const amf_value *obj);
/* Borrowed key and value of member i (insertion order). */
amf_value *amf_object_at(const amf_value *obj, size_t i, const char **key, size_t *key_len);
const char *amf_object_class(const amf_value *obj); /* "" when anonymous */

/* Dense array elements (strict array, dense part of an AMF3 array, vectors
 * of objects).  Takes the reference to v. */
int amf_array_push(amf_value *arr, amf_value *v);
size_t amf_array_len(const amf_value *arr);
amf_value *amf_array_at(const amf_value *arr, size_t i); /* borrowed */

/* ---- inspection ---- */
amf_type amf_type_of(const amf_value *v);
const char *amf_type_name(amf_type t);
/* Number for AMF_NUMBER, AMF_INTEGER and AMF_DATE; NaN otherwise. */
double amf_as_number(const amf_value *v);
bool amf_as_bool(const amf_value *v);          /* false unless AMF_BOOLEAN true */
/* Bytes of a string, XML or byte array (borrowed); NULL otherwise. */
const char *amf_as_string(const amf_value *v, size_t *len);
/* True when v is a string equal to the NUL-terminated s. */
bool amf_is_string(const amf_value *v, const char *s);

amf_value *amf_ref(amf_value *v);
void amf_unref(amf_value *v);
/* Deep structural equality (same type, same contents; NaN equals NaN,
 * 0 differs from -0).  Polynomial on graphs with shared sub-values: pairs
 * of shared containers already found equal are not compared again. */
bool amf_equal(const amf_value *a, const amf_value *b);

/* ---- limits ---- */
typedef struct amf_limits {
    uint32_t max_depth;       /* nesting of containers */
    uint32_t max_string;      /* bytes in one string / XML / byte array */
    uint32_t max_elements;    /* members or elements in one container */
    uint32_t max_refs;        /* entries in one reference table */
    size_t max_total;         /* bytes consumed by one top-level value */
    size_t max_memory;        /* memory one decoding context may build (values
                               * and reference tables, see amf_dec_mem);
                               * 0 = AMF_MEMORY_PER_BYTE x max_total */
} amf_limits;

#define AMF_DEFAULT_MAX_DEPTH 64
#define AMF_DEFAULT_MAX_STRING (1u << 20)
#define AMF_DEFAULT_MAX_ELEMENTS 65536
#define AMF_DEFAULT_MAX_REFS 65536
#define AMF_DEFAULT_MAX_TOTAL ((size_t)16 << 20)
/* Memory a context may build per input byte it may read, when max_memory
 * is 0.  Measured ratios (amf_value_mem / encoded bytes): strings 1 to 3,
 * arrays of numbers 4.5, AMF0 objects 5 (a chat message) to 20 ({x: 1}),
 * AMF3 objects sharing their traits 16 to 46; 2-byte AMF3 objects reach
 * ~70 and references are unbounded without a budget.  So a full-size
 * message of dense AMF3 records is refused; anything the shared-object
 * engine keeps (64 KiB per value) and the commands sohub serves are far
 * below it. */
#define AMF_MEMORY_PER_BYTE 16

extern const amf_limits amf_default_limits;

/* The budget l sets (max_memory, or the default derived from max_total);
 * l NULL = the defaults. */
size_t amf_limits_memory(const amf_limits *l);

/* ---- memory ----
 * One model of what memory costs, used by the decoder's budget, by
 * amf_value_mem and by the shared-object engine: an allocation of n bytes
 * counts as n plus an 8-byte allocator header, rounded up to 16 bytes, at
 * least 32 (glibc malloc on 64-bit systems; 0 for n == 0).  Arrays count
 * at their capacity, not their length. */
size_t amf_mem_block(size_t n);
/* Memory v holds: every block reachable from it (value blocks, string
 * bytes, member, element and key arrays, class names), each counted once
 * even when v reaches it several times; null, undefined, booleans,
 * unsupported and "" are shared singletons and cost nothing.  Time linear
 * in the distinct values reachable. */
size_t amf_value_mem(const amf_value *v);

/* ---- decoding ----
 * A decoder holds the reference tables.  For AMF0 the object reference
 * table and for AMF3 the string / object / trait tables live as long as
 * the decoder or until amf_dec_reset(): one RTMP message body is one
 * context (reset between messages).  An AMF0 0x11 marker switches one
 * value to AMF3 with the AMF3 tables of the same decoder. */
typedef struct amf_dec amf_dec;

amf_dec *amf_dec_new(const amf_limits *limits); /* NULL limits = defaults */
void amf_dec_free(amf_dec *d);
void amf_dec_reset(amf_dec *d);

/* Memory budget.  amf_dec_mem() is what the context holds by the model
 * of amf_mem_block: the values decoded since amf_dec_new / amf_dec_reset
 * (a value shared by several of them once) plus the capacity of the
 * reference tables (kept across resets, to be reused).  amf_decode
 * fails with SH_ELIMIT before an allocation that would take it past the
 * budget (amf_limits_memory(limits), or what amf_dec_set_max_memory set
 * last), so it never exceeds it.  A reset forgets the values (they belong
 * to the caller), not the tables.
 * amf_dec_last_mem() is the memory of the values the last successful
 * amf_decode built: with a fresh or reset context, exactly
 * amf_value_mem() of the value it returned. */
size_t amf_dec_mem(const amf_dec *d);
size_t amf_dec_last_mem(const amf_dec *d);
void amf_dec_set_max_memory(amf_dec *d, size_t max_memory);

/* Decodes one value of encoding enc from buf[0..len).
 * Returns 0 and sets *out (owned) and *consumed; SH_EMORE when buf ends
 * before the value does (nothing consumed, tables unchanged); another
 * negative SH_E* code on bad input, with the details in *err (may be NULL).
 * err->offset is relative to buf. */
int amf_decode(amf_dec *d, amf_encoding enc, const uint8_t *buf, size_t len,
               size_t *consumed, amf_value **out, sh_error *err);

/* ---- encoding ----
 * An encoder holds the reference tables it emits references from (repeated
 * AMF0 objects, AMF3 strings, objects and traits).  Reset per message. */
typedef struct amf_enc amf_enc;

amf_enc *amf_enc_new(void);
void amf_enc_free(amf_enc *e);
void amf_enc_reset(amf_enc *e);
/* Appends the encoding of v to out.  In AMF0 a value that only AMF3 can
 * carry (integer beyond double-exact range is not an issue; byte arrays,
 * vectors, dictionaries, XML) is written as 0x11 + AMF3. */
int amf_encode(amf_enc *e, amf_encoding enc, const amf_value *v, sh_buf *out);

/* Convenience: encode / decode with a fresh context. */
int amf_encode1(amf_encoding enc, const amf_value *v, sh_buf *out);

/* ======================================================================
 * Additions (after the first contract): the rest of the value model.
 * ====================================================================== */

/* ---- more construction (owned reference, NULL on ENOMEM) ---- */
amf_value *amf_unsupported(void);                   /* AMF0 0x0D */
amf_value *amf_xml_document(const char *s, size_t n); /* copies */
amf_value *amf_xml(const char *s, size_t n);          /* copies; AMF3 E4X XML */
amf_value *amf_byte_array(const void *p, size_t n);   /* copies */

/* Appends a member WITHOUT looking for an existing key (the decoder keeps
 * members exactly as on the wire, duplicates included, in O(1)).  Takes
 * the reference to v (also on failure). */
int amf_object_add(amf_value *obj, const char *key, size_t key_len, amf_value *v);

/* ---- object traits ----
 * An object is anonymous (class "") or typed.  Its first
 * amf_object_sealed_count() members are the sealed members of its traits;
 * the rest are dynamic members (only when amf_object_dynamic()).  New
 * anonymous objects are dynamic, new typed objects are not.  A member added
 * to a non-dynamic object becomes sealed; to a dynamic one, dynamic.  So a
 * typed object with sealed and dynamic members is built by adding the
 * sealed members, then amf_object_set_dynamic(o, true), then the rest.
 * AMF0 decodes anonymous objects as dynamic and typed objects as sealed. */
bool amf_object_dynamic(const amf_value *obj);
size_t amf_object_sealed_count(const amf_value *obj);
/* Switching to non-dynamic makes every current member sealed. */
int amf_object_set_dynamic(amf_value *obj, bool dynamic);

/* Externalizable objects (AMF3 traits flag 0x4).  The codec only knows
 * classes that wrap one plain value: flex.messaging.io.ArrayCollection,
 * flex.messaging.io.ObjectProxy and mx.collections.ArrayList; any other
 * externalizable class is refused (SH_EUNSUPPORTED) by the decoder.
 * amf_object_new_external takes the reference to inner (also on failure)
 * and returns NULL when class_name is not one of those. */
bool amf_external_class_known(const char *class_name, size_t len);
amf_value *amf_object_new_external(const char *class_name, amf_value *inner);
bool amf_object_externalizable(const amf_value *obj);
amf_value *amf_object_external_value(const amf_value *obj); /* borrowed */
size_t amf_object_class_len(const amf_value *obj);

/* ---- ECMA arrays ----
 * AMF0 writes an associative count before the members; peers fill it in
 * loosely (0, the number of members, the highest index + 1 ...), so it is
 * never trusted for allocation.  The decoder keeps the value it read and
 * the AMF0 encoder writes it back; a new array has no count field and the
 * encoder then writes the number of entries.  amf_array_push on an ECMA
 * array adds to its dense part (AMF3 arrays with both parts). */
bool amf_ecma_array_has_count(const amf_value *arr);
uint32_t amf_ecma_array_count(const amf_value *arr); /* field, or entries when unset */
void amf_ecma_array_set_count(amf_value *arr, uint32_t count);

/* ---- dates ---- */
double amf_date_ms(const amf_value *v);       /* NaN when not a date */
int16_t amf_date_tz(const amf_value *v);      /* AMF0 time-zone field (AMF3: 0) */

/* ---- vectors (AMF3 Vector.<int>, <uint>, <Number>, <Object>) ----
 * type is AMF_VECTOR_INT, _UINT, _DOUBLE or _OBJECT; type_name is the
 * element class of an object vector (NULL or "" for "*"), ignored
 * otherwise.  Numeric elements are stored as doubles; push refuses values
 * outside the element type (non-integral or out of range: SH_EINVAL).
 * Object vectors use amf_array_push / amf_array_len / amf_array_at. */
amf_value *amf_vector_new(amf_type type, bool fixed, const char *type_name);
bool amf_vector_fixed(const amf_value *vec);
const char *amf_vector_type_name(const amf_value *vec); /* "" for numeric */
size_t amf_vector_len(const amf_value *vec);            /* any vector type */
int amf_vector_push_number(amf_value *vec, double x);
double amf_vector_number_at(const amf_value *vec, size_t i); /* NaN when out of range */

/* ---- dictionaries (AMF3 Dictionary) ----
 * Entries keep wire order; keys are any values and are not deduplicated
 * (ActionScript compares keys by identity). */
amf_value *amf_dict_new(bool weak_keys);
bool amf_dict_weak_keys(const amf_value *dict);
/* Takes the references to key and v (also on failure). */
int amf_dict_add(amf_value *dict, amf_value *key, amf_value *v);
size_t amf_dict_count(const amf_value *dict);
/* Borrowed value of entry i, and its borrowed key in *key. */
amf_value *amf_dict_at(const amf_value *dict, size_t i, amf_value **key);

/* ---- encoding notes ----
 * AMF3: AMF_INTEGER is written as an integer when it fits 29 bits
 * (-2^28 .. 2^28-1), otherwise as a double; AMF_NUMBER always as a double.
 * Dates lose their time-zone field (AMF3 has none); AMF_UNSUPPORTED is
 * written as undefined; an ECMA array without members and without dense
 * entries is written like an empty strict array (so it decodes as one); a
 * dynamic member or associative key "" cannot be written (it ends the
 * list in AMF3): SH_EINVAL.
 * AMF0: AMF_INTEGER is written as a number; strings longer than 65535
 * bytes as long strings; XML, byte arrays, vectors, dictionaries,
 * externalizable objects, and the values AMF0 cannot express exactly
 * (typed objects with dynamic members, anonymous objects with sealed
 * members, ECMA arrays with a dense part) as 0x11 + AMF3, so they decode
 * back to the same value.  Member names and class names
 * longer than 65535 bytes cannot be written in AMF0 (SH_EINVAL).
 * A value nested deeper than AMF_ENC_MAX_DEPTH (e.g. a cycle built by
 * hand) is refused with SH_ELIMIT.  On failure out is cut back to its
 * length before the call and the encoder's tables are as they were. */
#define AMF_ENC_MAX_DEPTH 256

/* Decodes one value with a fresh decoder (default limits when NULL). */
int amf_decode1(amf_encoding enc, const uint8_t *buf, size_t len,
                const amf_limits *limits, size_t *consumed, amf_value **out,
                sh_error *err);

#endif
