/* chat_internal.h - shared by chat.c and chat_presence*.c only. */
#ifndef CHAT_INTERNAL_H
#define CHAT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"

/* Presence (chat_presence.c when the shared-object glue is built in,
 * chat_presence_stub.c otherwise).  `count` is the number of live
 * connections the user has in c's instance after the change (0 = the
 * user left the instance); since_ms is the wall-clock time of the change.
 * Called only for applications with presence = true. */
typedef struct chat_presence chat_presence;
chat_presence *chat_presence_new(app_server *srv);
void chat_presence_update(chat_presence *p, app_conn *c, const char *user, size_t count,
                          int64_t now_ms);
void chat_presence_free(chat_presence *p);
/* Delivers what the object's opening applied (call once per loop turn). */
void chat_presence_flush(chat_presence *p);
/* Clustered applications: the slot of user in room ("APP/INSTANCE") is
 * set to exactly (count, since_ms) as Redis says (count 0 removes it);
 * retain removes every slot whose user is not among users; drop empties
 * and closes the room's object (this node stopped mirroring it). */
void chat_presence_set(chat_presence *p, const char *room, const char *user, size_t count,
                       int64_t since_ms);
void chat_presence_retain(chat_presence *p, const char *room, char *const *users, size_t n);
void chat_presence_drop(chat_presence *p, const char *room);

#endif
