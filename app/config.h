/* config.h - sohub-server configuration: one struct, defaults in one table.
 *
 * Order of precedence: the defaults table (config.c), then the INI file
 * (--config, parsed with inih), then the command line.  app_config_validate()
 * runs once at start; after that the struct is passed down as const and
 * never changes while the server runs.
 *
 * INI layout (docs/configuration.md lists every key with its default):
 *   [server]            listen, log_level, data_dir and every limit
 *   [app NAME]          one section per application (also [app:NAME]);
 *                       NAME "*" configures the fallback for any name.
 *   [cluster]           redis, node, timeout_ms, node_ttl_ms, wait_replicas,
 *                       wait_timeout_ms: nodes sharing
 *                       applications through Redis (docs/cluster.md)
 *   [sample NAME]       settings of a sample application (samples/README.md),
 *                       stored as text here and checked by samples/ at start.
 * Unknown sections and keys are errors that name the file and line.
 */
#ifndef APP_CONFIG_H
#define APP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define APP_NAME_MAX 128       /* application / instance name bytes */
#define APP_CONFIG_MAX_APPS 256
#define APP_CONFIG_ERR_MAX 512

typedef enum app_auth_mode {
    APP_AUTH_NONE = 0,
    APP_AUTH_TOKEN = 1,
} app_auth_mode;

typedef enum app_conflict_mode {
    APP_CONFLICT_REJECT = 0, /* stale writes are refused (PROTOCOL.md rule 3) */
    APP_CONFLICT_LWW = 1,    /* last writer wins (Red5 / crtmpserver) */
} app_conflict_mode;

typedef enum app_store_kind {
    APP_STORE_SQLITE = 0,
    APP_STORE_MEMORY = 1,
} app_store_kind;

/* One [app NAME] section. */
typedef struct app_app_config {
    char name[APP_NAME_MAX + 1];
    app_auth_mode auth;
    char *secret;              /* owned; "" when unset */
    char *read_access;         /* owned; "/" = every shared object */
    char *write_access;        /* owned; "/" = every shared object */
    app_conflict_mode conflict;
    app_store_kind store;
    uint32_t commit_interval_ms; /* grouped commits of persistent objects */
    uint32_t history_depth;      /* versions kept for delta resync */
    uint32_t max_so_per_conn;    /* shared objects one connection may use */
    uint32_t max_so_slots;       /* slots in one shared object */
    uint64_t max_persistent_objects; /* persistent objects stored by the application, 0 = no quota */
    uint64_t max_persistent_bytes;   /* their key + value bytes, 0 = no quota */
    /* one-to-one chat and presence (app/chat, docs/chat.md) */
    char *users;                 /* owned; "a,b,c" known user names; NULL or "" = any */
    bool presence;               /* keep the `presence` shared object per instance */
    uint32_t chat_max_text;      /* bytes of one private message text */
    uint32_t chat_rate;          /* private messages per second per user, 0 = no cap */
    uint32_t chat_queue;         /* unacknowledged messages kept per recipient */
    uint32_t max_connections;    /* accepted connections to the application, 0 = no cap */
    char *origins;               /* owned; WebSocket Origins allowed: "" or "*" = any,
                                    else "https://a.example, http://127.0.0.1:8080" */
    char *redis;                 /* owned; "" = [cluster] redis, "off" = not clustered,
                                    else HOST:PORT of this application's Redis */
} app_app_config;

/* One key of a [sample NAME] section. */
typedef struct app_config_setting {
    char *section;   /* NAME of [sample NAME] */
    char *key;
    char *value;
    int line;        /* line in the config file */
} app_config_setting;

#define APP_CONFIG_MAX_SAMPLE_SETTINGS 1024

/* One [api_key NAME] section: a key of the server API (docs/api.md). */
typedef struct app_api_key {
    char name[APP_NAME_MAX + 1];
    char *secret;        /* owned; at least 16 characters */
    bool write;          /* scope = write (else read) */
} app_api_key;

#define APP_CONFIG_MAX_API_KEYS 64

typedef struct app_config {
    /* [server] */
    char *listen;              /* owned; "HOST:PORT", "[V6]:PORT" */
    char *log_level;           /* owned; error|warn|info|debug */
    char *data_dir;            /* owned */
    char *port_file;           /* owned; command line only; NULL = none */
    char *config_path;         /* owned; NULL = no file */
    bool check_only;           /* --check: validate, report, exit */
    char *http_listen;         /* owned; "" = off: web pages and WebSocket */
    char *admin_listen;        /* owned; "" = off: server API, metrics */
    char *https_listen;        /* owned; "" = off: http_listen's job over TLS */
    char *tls_cert;            /* owned; PEM certificate chain for https_listen */
    char *tls_key;             /* owned; PEM private key */
    char *web_root;            /* owned; static files of http_listen ("" = none) */
    char *admin_root;          /* owned; the admin page's files on admin_listen ("" = none) */
    char *ws_path;             /* owned; the WebSocket endpoint, default "/ws" */
    bool ws_deflate;           /* agree to permessage-deflate (default true) */

    uint32_t handshake_timeout_ms; /* accept -> NetConnection.connect */
    uint32_t idle_timeout_ms;      /* no bytes from the peer for this long */
    uint32_t ping_interval_ms;     /* ping a peer quiet for this long */
    uint32_t max_message_size;
    uint32_t max_chunk_size;
    uint32_t max_chunk_streams;
    uint64_t max_buffered_bytes;   /* partial messages, per connection */
    uint32_t max_connections;
    uint32_t max_connections_per_ip;
    uint64_t max_output_bytes;     /* queued output per connection */
    uint64_t max_client_memory;    /* memory all connections hold together, 0 = no cap */
    uint32_t send_timeout_ms;      /* queued output with no progress for this long */
    uint32_t preconnect_max_message_size; /* messages before connect is accepted */
    /* HTTP (http_listen, admin_listen) */
    uint32_t http_max_target;        /* request target bytes */
    uint32_t http_max_header_bytes;  /* request header bytes, all headers together */
    uint64_t http_max_body;          /* request body bytes (admin listener only) */
    uint64_t http_max_file;          /* largest static file served */
    uint32_t http_request_timeout_ms; /* first byte -> whole request */
    uint32_t max_streams;          /* createStream ids per connection */
    uint32_t max_pending_calls;    /* server->client calls awaiting an answer */
    uint32_t messages_per_read;    /* fairness budget per read callback */
    uint32_t out_chunk_size;
    uint32_t window_ack_size;
    uint32_t max_amf_depth;
    uint32_t max_amf_string;
    uint32_t max_amf_elements;
    /* shared-object engine (app/so_glue.c) */
    uint64_t so_congestion_bytes;    /* unsent output that marks a subscriber congested */
    uint32_t so_max_updates_per_sec; /* SO writes per client per second, 0 = no cap */
    uint32_t so_unload_idle_s;       /* idle rooms' persistent objects leave memory, 0 = never */
    uint64_t chat_max_stored;        /* unacknowledged private messages, whole server */
    bool store_sync_full;            /* store_sync = full: SQLite synchronous=FULL */
    int log_format;                  /* log_format: sh_log_format (text, json) */

    /* [sample NAME] sections: settings of the sample applications,
     * kept as text in file order and validated by samples/ at start. */
    struct app_config_setting *sample_settings; /* owned */
    size_t nsample_settings;

    /* [cluster] (docs/cluster.md) */
    char *cluster_redis;         /* owned; HOST:PORT, "" = no cluster */
    char *cluster_node;          /* owned; this node's name in logs and listings, "" = host:port */
    uint32_t cluster_timeout_ms; /* Redis connect and command time-out */
    uint32_t cluster_node_ttl_ms; /* a silent node's presence and leases expire after this */
    uint32_t cluster_wait_replicas;   /* replicas that must have a write before it is acknowledged */
    uint32_t cluster_wait_timeout_ms; /* how long a write waits for them */

    /* [api_key NAME] sections */
    app_api_key *api_keys;     /* owned */
    size_t napi_keys;

    /* [app NAME] sections in file order */
    app_app_config *apps;      /* owned */
    size_t napps;

    /* derived by app_config_validate() */
    int log_level_num;
    char listen_host[64];
    int listen_port;
    char http_host[64];
    int http_port;
    char admin_host[64];
    int admin_port;
    char https_host[64];
    int https_port;
} app_config;

/* Fills c with the defaults table.  c owns its strings: app_config_cleanup. */
void app_config_init(app_config *c);
void app_config_cleanup(app_config *c);

/* Parses an INI file over c.  Returns 0 or a negative SH_E* code with a
 * message "FILE:LINE: ..." in err. */
int app_config_load_file(app_config *c, const char *path, char *err, size_t errsz);
/* Same for INI text in memory (tests); `origin` names it in messages. */
int app_config_load_string(app_config *c, const char *text, const char *origin,
                           char *err, size_t errsz);

/* Sets one [server] key from text (used by the INI parser and the command
 * line).  Returns 0 or SH_ENOTFOUND (unknown key) / SH_EINVAL (bad value),
 * with a message in err. */
int app_config_set_server(app_config *c, const char *key, const char *value,
                          char *err, size_t errsz);

/* Parses argv over c (getopt_long).  Returns 0, 1 when the program should
 * exit 0 at once (--help / --version printed), or a negative code with err. */
int app_config_parse_args(app_config *c, int argc, char **argv, char *err, size_t errsz);

/* Checks ranges and cross-field rules, derives listen_host/port and
 * log_level_num.  Returns 0 or SH_EINVAL with a message. */
int app_config_validate(app_config *c, char *err, size_t errsz);

/* Sets one [cluster] key (INI, and --set cluster.KEY=VALUE).  Returns 0
 * or SH_ENOTFOUND / SH_EINVAL with a message. */
int app_config_set_cluster(app_config *c, const char *key, const char *value, char *err,
                           size_t errsz);
/* The Redis of an application: HOST:PORT, or NULL when it is not
 * clustered (no [cluster] redis and none of its own, or redis = off).
 * a may be NULL (an application without a section).  Borrowed. */
const char *app_config_app_redis(const app_config *c, const app_app_config *a);
/* Splits HOST:PORT ("[V6]:PORT" too).  Returns 0 or SH_EINVAL. */
int app_config_split_hostport(const char *s, char *host, size_t hostsz, int *port);

/* The section configuring application `name`: its own [app NAME] section,
 * else [app *], else NULL.  Borrowed. */
const app_app_config *app_config_find_app(const app_config *c, const char *name);
/* The same for room "app/instance" (the application is the part before
 * the first '/'). */
const app_app_config *app_config_find_room_app(const app_config *c, const char *room);
/* Defaults of an [app] section (no name); app_app_config_cleanup frees
 * the strings it owns. */
void app_app_config_defaults(app_app_config *a);
void app_app_config_cleanup(app_app_config *a);

void app_config_usage(FILE *f, const char *argv0);

#endif
