/* cluster.h - this node's links to the Redis servers of clustered
 * applications (docs/cluster.md).
 *
 * An application is clustered when the configuration gives it a Redis:
 * [cluster] redis = HOST:PORT for every application, or [app NAME] redis =
 * HOST:PORT for one (redis = off keeps one application on this node only).
 * Its shared objects, private messages and presence then live in that
 * Redis, and every node serving the application sees the same state.
 *
 * app_cluster (one per server, APP_EXT_CLUSTER) holds one link per distinct
 * Redis address.  A link is two app_redis connections, one for commands
 * and Lua scripts and one for subscriptions (Redis does not mix them), and
 * this node's heartbeat key there.  When the command connection goes down
 * the subscription connection is dropped too, so a module that lost its
 * commands also hears that its subscriptions may have missed messages.
 *
 * Node identity: node_id is 16 hex digits drawn at start, so a restarted
 * node is a new node (what a dead one held expires with its heartbeat);
 * the name ([cluster] node, default HOST:PORT of the RTMP listener) is for
 * people.  Heartbeat: every node_ttl_ms / 3 each link sets
 * "sohub:node:{node_id}" = name with a time to live of node_ttl_ms; a node
 * whose key is gone is dead, and scripts drop what it held (leases,
 * presence).  A clean stop deletes the key at once.
 *
 * Modules (shared objects, chat) find the cluster with app_cluster_of,
 * register their scripts and a state listener while the server is set up,
 * and use app_cluster_link_for(app) to learn whether an application is
 * clustered.  Everything runs on the loop thread.
 */
#ifndef APP_CLUSTER_H
#define APP_CLUSTER_H

#include <stdbool.h>

#include "app.h"
#include "redis.h"

typedef struct app_cluster app_cluster;
typedef struct app_cluster_link app_cluster_link;

/* Sets the cluster up when the configuration names a Redis (else does
 * nothing and returns 0).  Call it before the modules that use it register,
 * so its shutdown hook runs after theirs (their last commands are sent
 * before the links close).  Returns 0 or SH_ENOMEM / SH_EINVAL. */
int app_cluster_register(app_server *srv);
/* The server's cluster, NULL when no application is clustered. */
app_cluster *app_cluster_of(const app_server *srv);

/* The link of application `app`, NULL when it is not clustered. */
app_cluster_link *app_cluster_link_for(app_cluster *c, const char *app);
/* Links: start with *iter = 0; NULL at the end. */
app_cluster_link *app_cluster_link_next(app_cluster *c, size_t *iter);

const char *app_cluster_node_id(const app_cluster *c);
const char *app_cluster_node_name(const app_cluster *c);
uint32_t app_cluster_node_ttl_ms(const app_cluster *c);

/* A script every link loads (s borrowed; static storage).  Returns 0 or
 * SH_ENOMEM. */
int app_cluster_add_script(app_cluster *c, const app_redis_script *s);

/* Link state changes: up = both connections up.  Called on every change
 * of either connection.  Returns 0 or SH_ENOMEM. */
typedef void (*app_cluster_state_fn)(app_cluster_link *l, bool up, void *ud);
int app_cluster_on_state(app_cluster *c, app_cluster_state_fn fn, void *ud);

app_redis *app_cluster_cmd(app_cluster_link *l);
app_redis *app_cluster_sub(app_cluster_link *l);
bool app_cluster_link_up(const app_cluster_link *l);
const char *app_cluster_link_addr(const app_cluster_link *l);
/* Times the link went down since start (metrics). */
uint64_t app_cluster_link_downs(const app_cluster_link *l);

#endif
