/* chat_redis.h - private messages and presence of clustered applications,
 * in the application's Redis (docs/cluster-chat.md is the long form).
 *
 * chat.c keeps one chat logic for every application: who is online, the
 * order on a connection (stored messages first, then live ones, in id
 * order), clientIds, rates.  For an application with a Redis link
 * (app_cluster_link_for) it asks this module instead of the store module
 * for what the store module does for SQLite: a user's counters, a page of
 * stored messages, storing a message, an acknowledgement; and it hears
 * live messages from the user's channel instead of from its own commits.
 *
 * Keys of user U of application A, all under one hash tag so that a user
 * stays on one shard ({LEN:A:U}, LEN = strlen(A) so no two (A, U) meet):
 *   sohub:chat:{..}:n   hash: last (the id counter), acked
 *   sohub:chat:{..}:q   sorted set: the unacknowledged messages, score = id
 *   sohub:chat:{..}:d:S\nCID  the answer to sender S's clientId (60 s)
 *   sohub:chat:{..}:c   the pub/sub channel of U's new messages
 * A message (stored member and published payload) is
 *   "ID\nTS\nFROM\nTEXT"  (FROM is printable ASCII; TEXT any bytes).
 *
 * Presence of room R ("APP/INSTANCE"):
 *   sohub:pres:{R}      hash: user -> "NODE COUNT SINCE;..." one entry per
 *                       node holding connections of the user in R
 *   sohub:pres:{R}:v    the room's version, one more per change
 *   sohub:pres:{R}:c    channel: "VERSION\nUSER\nCOUNT\nSINCE" (the user's
 *                       totals over every node; COUNT 0 = gone)
 * A node's entries are dropped by the sweep script once its heartbeat key
 * sohub:node:NODE has expired.
 *
 * Everything is asynchronous on the loop thread; every callback runs
 * exactly once (with an error status when Redis did not answer) unless the
 * call returned an error.  Calls return SH_ESTATE at once when the link is
 * down: nothing is queued while Redis is away.
 */
#ifndef CHAT_REDIS_H
#define CHAT_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat_store.h"
#include "cluster.h"

/* Registers the scripts with every link.  Returns 0 or SH_ENOMEM. */
int chat_redis_register(app_cluster *c);

/* A user's counters: fn(ud, status, last_id, acked), status 0 or SH_EIO. */
typedef void (*chat_redis_user_fn)(void *ud, int status, uint64_t last_id, uint64_t acked,
                                   uint64_t queued);
int chat_redis_user_read(app_cluster_link *l, const char *app, const char *user,
                         chat_redis_user_fn fn, void *ud);

/* Up to max stored messages with id > after, in id order, and the user's
 * acknowledged id read at the same moment.  msgs borrowed for the call. */
typedef void (*chat_redis_page_fn)(void *ud, int status, uint64_t acked,
                                   const chat_store_msg *msgs, size_t n);
int chat_redis_page(app_cluster_link *l, const char *app, const char *user, uint64_t after,
                    size_t max, chat_redis_page_fn fn, void *ud);

/* Stores a message for `to` and publishes it, in one script: the id is
 * the recipient's next one.  cid "" = no clientId.  fn(ud, status, id,
 * delivered): status 0 (stored; delivered = a node holds a connection of
 * the recipient), SH_ELIMIT (the recipient has `queue` unacknowledged
 * messages: nothing stored), SH_EIO (no answer: it may be stored; a retry
 * with the same clientId gets the first answer). */
typedef void (*chat_redis_sent_fn)(void *ud, int status, uint64_t id, bool delivered);
int chat_redis_send(app_cluster_link *l, const char *app, const char *to, const char *from,
                    int64_t ts, const char *text, size_t text_len, const char *cid,
                    uint32_t queue, chat_redis_sent_fn fn, void *ud);

/* Acknowledges every message of user up to id (never past its last id);
 * fn(ud, status, acked) with the acknowledged id after it. */
typedef void (*chat_redis_ack_fn)(void *ud, int status, uint64_t acked, uint64_t removed);
int chat_redis_ack(app_cluster_link *l, const char *app, const char *user, uint64_t id,
                   chat_redis_ack_fn fn, void *ud);

/* The user's channel: the user handler hears READY (read the counters then), one
 * MESSAGE per new message (m decoded, prev the user's id before it, so a
 * message whose prev is not the last id a connection got follows one it
 * missed; m NULL when it could not be decoded: treat as a gap) and LOST
 * (messages may be missed until the next READY).  Ids grow but are not
 * consecutive (Redis' clock, docs/cluster-chat.md).
 * Returns 0 or SH_ENOMEM. */
typedef void (*chat_redis_live_fn)(void *ud, app_redis_sub_event ev, uint64_t prev,
                                   const chat_store_msg *m);
int chat_redis_subscribe(app_cluster_link *l, const char *app, const char *user, void *ud);
void chat_redis_unsubscribe(app_cluster_link *l, const char *app, const char *user);

/* Presence of room: this node (node_id) now has `count` connections of
 * user there (0 = none), the first since since_ms.  fn may be NULL. */
typedef void (*chat_redis_done_fn)(void *ud, int status);
int chat_redis_presence_set(app_cluster_link *l, const char *room, const char *node_id,
                            const char *user, size_t count, int64_t since_ms,
                            chat_redis_done_fn fn, void *ud);
/* Drops the entries of nodes whose heartbeat key is gone (published as
 * changes). */
int chat_redis_presence_sweep(app_cluster_link *l, const char *room);
/* Every user of room, read at one version: fn(ud, 0, version, user, count,
 * since) per user, then fn(ud, status, version, NULL, 0, 0) at the end
 * (status 0 or SH_EIO). */
typedef void (*chat_redis_pres_fn)(void *ud, int status, uint64_t version, const char *user,
                                   size_t count, int64_t since);
int chat_redis_presence_read(app_cluster_link *l, const char *room, chat_redis_pres_fn fn,
                             void *ud);
/* The room's presence channel: the room handler's MESSAGE events carry
 * (version, user, count, since): a change of the room's version `version`
 * (versions grow by one per change); READY and LOST as for users (user
 * NULL). */
typedef void (*chat_redis_pres_live_fn)(void *ud, app_redis_sub_event ev, uint64_t version,
                                        const char *user, size_t count, int64_t since);
int chat_redis_presence_subscribe(app_cluster_link *l, const char *room, void *ud);
/* The handlers of every user and room subscription (ud = the one given to
 * the subscribe call), set once before the first subscribe. */
void chat_redis_set_handlers(chat_redis_live_fn user_fn, chat_redis_pres_live_fn room_fn);
void chat_redis_presence_unsubscribe(app_cluster_link *l, const char *room);

#endif
