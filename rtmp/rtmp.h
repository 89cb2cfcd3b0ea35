/* rtmp.h - the RTMP protocol layer, sans-I/O.
 *
 * Nothing here touches a socket, reads a clock or draws random numbers:
 * bytes go in, messages and output bytes come out; time and randomness are
 * passed in.  Layers, bottom up:
 *   rtmp_hs    - handshake (simple and digest, server and client side)
 *   rtmp_chunk - chunk stream decoder / encoder (spec 5.3)
 *   rtmp_conn  - one connection: handshake, then chunks, with protocol
 *                control (set chunk size, abort, acks, window, peer
 *                bandwidth) and user control ping handled inside; it hands
 *                every other message to the caller and writes its own
 *                replies into the connection's sh_outq.
 *   rtmp_cmd   - command messages (types 20 and 17) to and from amf values.
 */
#ifndef RTMP_H
#define RTMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amf.h"
#include "sh_buf.h"
#include "sh_err.h"
#include "sh_rcbuf.h"

/* Message type ids (spec 5.4, 6.2, 7.1). */
enum {
    RTMP_MSG_SET_CHUNK_SIZE = 1,
    RTMP_MSG_ABORT = 2,
    RTMP_MSG_ACK = 3,
    RTMP_MSG_USER_CONTROL = 4,
    RTMP_MSG_WINDOW_ACK_SIZE = 5,
    RTMP_MSG_SET_PEER_BW = 6,
    RTMP_MSG_AUDIO = 8,
    RTMP_MSG_VIDEO = 9,
    RTMP_MSG_DATA_AMF3 = 15,
    RTMP_MSG_SO_AMF3 = 16,
    RTMP_MSG_COMMAND_AMF3 = 17,
    RTMP_MSG_DATA_AMF0 = 18,
    RTMP_MSG_SO_AMF0 = 19,
    RTMP_MSG_COMMAND_AMF0 = 20,
    RTMP_MSG_AGGREGATE = 22,
};

/* User control event types (spec 7.1.7). */
enum {
    RTMP_UC_STREAM_BEGIN = 0,
    RTMP_UC_STREAM_EOF = 1,
    RTMP_UC_STREAM_DRY = 2,
    RTMP_UC_SET_BUFFER_LENGTH = 3,
    RTMP_UC_STREAM_IS_RECORDED = 4,
    RTMP_UC_PING_REQUEST = 6,
    RTMP_UC_PING_RESPONSE = 7,
};

/* Chunk stream ids the server writes on. */
enum {
    RTMP_CSID_CONTROL = 2,  /* protocol control and user control */
    RTMP_CSID_COMMAND = 3,  /* commands */
    /* Messages encoded once and queued to many connections (shared-object
     * updates).  Every message on it starts with a full (type 0) header,
     * so no connection keeps header state for it and queueing the same
     * bytes anywhere needs no bookkeeping. */
    RTMP_CSID_SHARED = 5,
};

#define RTMP_HANDSHAKE_SIZE 1536
#define RTMP_DEFAULT_CHUNK_SIZE 128

/* One complete message.  In messages returned by a decoder, `data` is
 * borrowed and valid until the next call on that decoder. */
typedef struct rtmp_msg {
    uint8_t type;
    uint32_t stream_id;   /* message stream id */
    uint32_t timestamp;   /* absolute, milliseconds */
    uint32_t csid;        /* chunk stream it arrived / is to be sent on */
    const uint8_t *data;
    size_t len;
} rtmp_msg;

/* ---- limits (every one a config option in app/) ----
 * Each broken limit makes the decoder / conn return SH_ELIMIT with a
 * description in sh_error.  The message length is checked on the chunk
 * header, before any payload is awaited; message buffers grow as chunks
 * arrive, never from the claimed length alone.  A chunk stream id counts
 * as "in use" from its first header on (its header state must be kept for
 * compressed headers), so max_chunk_streams bounds the distinct ids a peer
 * may use on one connection. */
typedef struct rtmp_limits {
    uint32_t max_chunk_size;     /* largest Set Chunk Size accepted */
    uint32_t max_message_size;   /* largest message length accepted */
    uint32_t max_chunk_streams;  /* chunk stream ids in use at once */
    size_t max_buffered;         /* bytes held in partial messages, all streams */
} rtmp_limits;

#define RTMP_DEFAULT_MAX_CHUNK_SIZE 65536
/* The smallest Window Ack Size from a peer honoured as given: a smaller
 * one is raised to this, so acknowledgements cost at most 4 bytes of
 * output per RTMP_MIN_PEER_WINDOW bytes of input. */
#define RTMP_MIN_PEER_WINDOW 4096
/* Ping Responses one read may produce; later Ping Requests of the same
 * read are not answered. */
#define RTMP_MAX_PINGS_PER_READ 8
#define RTMP_DEFAULT_MAX_MESSAGE_SIZE (1u << 20)
#define RTMP_DEFAULT_MAX_CHUNK_STREAMS 64
#define RTMP_DEFAULT_MAX_BUFFERED ((size_t)4 << 20)

extern const rtmp_limits rtmp_default_limits;

/* ---- handshake ---- */
typedef enum rtmp_role { RTMP_ROLE_SERVER, RTMP_ROLE_CLIENT } rtmp_role;

typedef struct rtmp_hs rtmp_hs; /* opaque; rtmp_hs_new / rtmp_hs_free */

/* random: RTMP_HANDSHAKE_SIZE random bytes (borrowed, copied).  epoch_ms:
 * the time field written into S1/C1.  A client with digest=true signs C1
 * (FFmpeg style) and checks S1's digest when present. */
rtmp_hs *rtmp_hs_new(rtmp_role role, const uint8_t *random, uint32_t epoch_ms, bool digest);
void rtmp_hs_free(rtmp_hs *h);
/* Client only: appends C0+C1 to out. */
int rtmp_hs_client_start(rtmp_hs *h, sh_buf *out);
/* Feeds peer bytes.  Appends any reply to out.  Returns 0 when the
 * handshake is complete (*consumed bytes used; bytes after that belong to
 * the chunk layer), SH_EMORE when it wants more (all input consumed),
 * negative on failure (details in err). */
int rtmp_hs_feed(rtmp_hs *h, const uint8_t *in, size_t len, size_t *consumed,
                 sh_buf *out, sh_error *err);
/* Which handshake the peer used: 0 simple, 1 digest scheme 0, 2 digest scheme 1. */
int rtmp_hs_kind(const rtmp_hs *h);
/* Where the 32-byte digest sits in a 1536-byte C1/S1 under digest scheme
 * 0 or 1 (computed from the packet's own offset bytes). */
size_t rtmp_hs_digest_pos(const uint8_t *p, int scheme);

/* ---- chunk layer ---- */
typedef struct rtmp_chunk_dec rtmp_chunk_dec; /* opaque */

rtmp_chunk_dec *rtmp_chunk_dec_new(const rtmp_limits *limits);
void rtmp_chunk_dec_free(rtmp_chunk_dec *d);
void rtmp_chunk_dec_set_chunk_size(rtmp_chunk_dec *d, uint32_t size);
void rtmp_chunk_dec_abort(rtmp_chunk_dec *d, uint32_t csid);
/* Replaces the limits (copied); they apply to messages whose first chunk
 * comes after the call. */
void rtmp_chunk_dec_set_limits(rtmp_chunk_dec *d, const rtmp_limits *limits);
/* Consumes input until one message is complete or the input ends.
 * Returns 1 with *msg set (data valid until the next call), 0 when all
 * input was consumed without completing a message, negative on error.
 * *consumed is set in every case. */
int rtmp_chunk_dec_feed(rtmp_chunk_dec *d, const uint8_t *in, size_t len,
                        size_t *consumed, rtmp_msg *msg, sh_error *err);

typedef struct rtmp_chunk_enc rtmp_chunk_enc; /* opaque; tracks per-csid state for header compression */

rtmp_chunk_enc *rtmp_chunk_enc_new(void);
void rtmp_chunk_enc_free(rtmp_chunk_enc *e);
void rtmp_chunk_enc_set_chunk_size(rtmp_chunk_enc *e, uint32_t size);
uint32_t rtmp_chunk_enc_chunk_size(const rtmp_chunk_enc *e);
/* Appends the chunks of m to out, compressing headers against the
 * previous message on m->csid. */
int rtmp_chunk_enc_write(rtmp_chunk_enc *e, const rtmp_msg *m, sh_buf *out);
/* Stateless form: the first chunk always has a full (type 0) header, so the
 * bytes are valid on any connection with this out chunk size.  This is the
 * form used to encode once and queue the same sh_rcbuf to many peers. */
int rtmp_chunk_write_full(const rtmp_msg *m, uint32_t chunk_size, sh_buf *out);
sh_rcbuf *rtmp_chunk_shared(const rtmp_msg *m, uint32_t chunk_size);

/* ---- connection ---- */
typedef struct rtmp_conn_config {
    rtmp_role role;
    rtmp_limits limits;
    uint32_t out_chunk_size;     /* server default 4096 */
    uint32_t window_ack_size;    /* sent in Window Ack Size and Set Peer Bandwidth */
    bool client_digest;          /* client role: sign C1 */
} rtmp_conn_config;

void rtmp_conn_config_default(rtmp_conn_config *c, rtmp_role role);

typedef struct rtmp_conn rtmp_conn; /* opaque */

/* out: the connection's output queue (borrowed, must outlive the conn);
 * random: RTMP_HANDSHAKE_SIZE bytes; epoch_ms as in rtmp_hs_new.
 * A client conn queues C0+C1 at once. */
rtmp_conn *rtmp_conn_new(const rtmp_conn_config *cfg, sh_outq *out,
                         const uint8_t *random, uint32_t epoch_ms);
void rtmp_conn_free(rtmp_conn *c);
bool rtmp_conn_handshake_done(const rtmp_conn *c);

/* Feeds received bytes.  Handshake and protocol/user control messages are
 * handled inside (replies queued to out; Ping Responses are reported as
 * messages too, so the caller can measure RTT).  Returns 1 with *msg set
 * (valid until the next call) for each message the caller must handle, 0
 * when all input was used, negative on a protocol error or a broken limit
 * (details in *err; the caller closes the connection). *consumed is set in
 * every case; call again with the rest of the input after a 1. */
int rtmp_conn_feed(rtmp_conn *c, const uint8_t *in, size_t len,
                   size_t *consumed, rtmp_msg *msg, sh_error *err);

/* Encodes m into chunks and queues them (m is borrowed).  Sends made
 * before the handshake is complete (a client's connect right after
 * rtmp_conn_new) are held, in order, and queued right after the handshake
 * bytes. */
int rtmp_conn_send(rtmp_conn *c, const rtmp_msg *m);
/* Queues one message made by rtmp_chunk_shared on RTMP_CSID_SHARED, cut
 * with chunk_size (SH_EINVAL when that is not this conn's out chunk size;
 * SH_ESTATE before the handshake is complete).  Takes its own reference.
 * Nothing is parsed and no header state changes: the encoder never writes
 * on RTMP_CSID_SHARED itself. */
int rtmp_conn_send_shared(rtmp_conn *c, sh_rcbuf *chunks, uint32_t chunk_size);
/* Starts a new read: resets the per-read budget of control replies (Ping
 * Responses), so a peer cannot make a read produce unbounded output. */
void rtmp_conn_read_begin(rtmp_conn *c);
/* Replaces the input limits (a server raises them once the client's
 * connect was accepted), as rtmp_chunk_dec_set_limits. */
void rtmp_conn_set_limits(rtmp_conn *c, const rtmp_limits *limits);
/* Bytes held for partial input messages (the memory input can make it
 * hold, for accounting). */
size_t rtmp_conn_buffered(const rtmp_conn *c);
uint32_t rtmp_conn_out_chunk_size(const rtmp_conn *c);
/* Changes the out chunk size: queues Set Chunk Size first.  A client conn
 * does this by itself after the handshake when cfg.out_chunk_size is not
 * 128; a server conn does it in rtmp_conn_send_connect_preamble (until
 * then its out chunk size is 128). */
int rtmp_conn_set_out_chunk_size(rtmp_conn *c, uint32_t size);
/* Server role: queues Window Ack Size, Set Peer Bandwidth (dynamic) and
 * Set Chunk Size, as FMS does before answering connect. */
int rtmp_conn_send_connect_preamble(rtmp_conn *c);
/* Queues a user control event (Stream Begin, Ping Request with a timestamp ...). */
int rtmp_conn_send_user_control(rtmp_conn *c, uint16_t event, uint32_t v1);
uint64_t rtmp_conn_bytes_in(const rtmp_conn *c);
/* Added: which handshake the peer used (as rtmp_hs_kind), -1 if unknown. */
int rtmp_conn_handshake_kind(const rtmp_conn *c);
/* Added: the last sequence number the peer acknowledged, and how many
 * Acknowledgement messages arrived. */
uint32_t rtmp_conn_peer_ack(const rtmp_conn *c);
uint64_t rtmp_conn_acks_received(const rtmp_conn *c);
/* Added: the window the peer announced (Window Ack Size), 0 when none. */
uint32_t rtmp_conn_peer_window(const rtmp_conn *c);

/* ---- commands (spec 7.1.1 / 7.2) ----
 * A command message body: name, transaction id, command object (or null),
 * then zero or more arguments.  Type 17 bodies begin with one byte (0 or 3,
 * accepted and skipped) followed by AMF0 values that may switch to AMF3. */
typedef struct rtmp_cmd {
    char *name;            /* owned, NUL-terminated */
    double txid;
    amf_value *cmd_obj;    /* owned; amf null when absent */
    amf_value **args;      /* owned */
    size_t nargs;
} rtmp_cmd;

#define RTMP_MAX_CMD_ARGS 64

/* Decodes a type 20 or 17 message body.  Returns 0 or a negative code. */
int rtmp_cmd_decode(const rtmp_msg *m, const amf_limits *limits, rtmp_cmd *out, sh_error *err);
void rtmp_cmd_cleanup(rtmp_cmd *c);
/* Encodes a command body: name, txid, cmd_obj (NULL = null), args.  With
 * amf3 true the body is written for a type 17 message: leading 0 byte,
 * then AMF0 values (the AMF0 encoder itself switches to AMF3 with 0x11 for
 * values only AMF3 can carry), a form FFmpeg, librtmp, Red5 and Flash all
 * read.  Borrows everything; appends to out. */
int rtmp_cmd_encode(sh_buf *out, bool amf3, const char *name, double txid,
                    const amf_value *cmd_obj, amf_value *const *args, size_t nargs);
/* Encodes and sends a command on RTMP_CSID_COMMAND of message stream sid. */
int rtmp_conn_send_cmd(rtmp_conn *c, uint32_t sid, bool amf3, const char *name,
                       double txid, const amf_value *cmd_obj,
                       amf_value *const *args, size_t nargs);

#endif
