/* amf_json.h - lossless JSON form of AMF values (docs/amf-json.md).
 *
 * Plain JSON (null, booleans, finite numbers, strings, arrays, objects)
 * maps to the obvious AMF values (numbers are AMF_NUMBER doubles, arrays
 * strict arrays, objects anonymous dynamic objects).  Everything else is a
 * tagged object {"$amf": "<tag>", ...}; amf_json_from_value only emits a
 * tagged form when the plain one would lose something, and
 * amf_json_to_value accepts both, so value -> JSON -> value is the
 * identity (amf_equal), except that shared sub-values become copies.
 *
 * The one JSON mapping of AMF in sohub: the server's JSON (WebSocket)
 * clients, sohub-cli and the tests all use it.
 */
#ifndef AMF_JSON_H
#define AMF_JSON_H

#include <cjson/cJSON.h>

#include "amf.h"

/* JSON has no references: a shared sub-value is written out each time it
 * is reached, so a small decoded graph can expand enormously.  The
 * conversion stops past this many JSON values (a string or byte array
 * counts one more per 64 bytes). */
#define AMF_JSON_MAX_NODES ((size_t)1 << 22)

/* Returns an owned cJSON tree (cJSON_Delete), NULL on ENOMEM, when v
 * nests deeper than AMF_ENC_MAX_DEPTH or expands past AMF_JSON_MAX_NODES. */
cJSON *amf_json_from_value(const amf_value *v);

/* Converts a JSON tree; returns 0 and an owned value in *out, or SH_EINVAL
 * with a static reason in *why (may be NULL) and *at set to the offending
 * JSON node (may be NULL), or SH_ENOMEM. */
int amf_json_to_value(const cJSON *j, amf_value **out, const char **why, const cJSON **at);

/* A bound on the JSON values (nodes) text[0..n) would make when parsed:
 * every value, member and element is one node, and each needs a ','
 * '[' or '{' before it except the first.  Counted without allocating,
 * before a parser builds anything, so a small text cannot make a large
 * tree ("[0,0,0,..." is 2 bytes a node). */
size_t amf_json_node_bound(const char *text, size_t n);

/* Compact JSON text of the tree j (malloc'd, free()), with every number
 * written so that it reads back as the same double (cJSON's own printing
 * may drop digits); j's number nodes become raw text nodes on the way (j
 * stays good for cJSON_Delete).  NULL on ENOMEM. */
char *amf_json_print_tree(cJSON *j);

/* Convenience: compact JSON text of v (malloc'd, free()), NULL on ENOMEM. */
char *amf_json_print(const amf_value *v);

/* Parses JSON text into a value; 0, or SH_EINVAL with *why. */
int amf_json_parse(const char *text, amf_value **out, const char **why);

#endif
