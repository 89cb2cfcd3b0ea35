/* cluster.c - links to the Redis servers of clustered applications, node
 * identity and heartbeat (cluster.h). */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sh_err.h"
#include "sh_log.h"

#define MAX_LINKS 16
#define STOP_DRAIN_MS 1000

struct app_cluster_link {
    app_cluster *c;
    char addr[80];          /* HOST:PORT as configured */
    app_redis *cmd, *sub;
    bool up;                /* both connections up, as last reported */
    uint64_t downs;
};

typedef struct state_fn {
    app_cluster_state_fn fn;
    void *ud;
} state_fn;

struct app_cluster {
    app_server *srv;
    app_cluster_link links[MAX_LINKS];
    size_t nlinks;
    char node_id[17];
    char node_name[80];
    char node_key[32];      /* sohub:node:{node_id} */
    uint32_t ttl_ms;
    uv_timer_t beat;
    uint64_t stop_deadline; /* ms; while stopping, when the links close anyway */
    bool stopping;
    state_fn *fns;
    size_t nfns;
};

static void tell(app_cluster_link *l)
{
    bool up = app_redis_up(l->cmd) && app_redis_up(l->sub);
    if (up == l->up)
        return;
    l->up = up;
    if (!up)
        l->downs++;
    SH_LOG(up ? SH_LOG_INFO : SH_LOG_WARN, "cluster: redis %s %s", l->addr,
           up ? "up: clustered applications are served" : "down: writes are refused");
    for (size_t i = 0; i < l->c->nfns; i++)
        l->c->fns[i].fn(l, up, l->c->fns[i].ud);
}

static void on_heartbeat_reply(app_redis *r, redisReply *rep, void *ud)
{
    (void)r;
    app_cluster_link *l = ud;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        SH_LOG(SH_LOG_WARN, "cluster: redis %s: heartbeat: %s", l->addr, rep->str);
}

static void heartbeat(app_cluster_link *l)
{
    app_cluster *c = l->c;
    const app_config *cfg = app_server_config(c->srv);
    if (!*cfg->cluster_node) /* the bound port is known once the server listens */
        snprintf(c->node_name, sizeof(c->node_name), "%s:%d", cfg->listen_host,
                 app_server_port(c->srv));
    char ttl[16];
    const char *argv[5] = {"SET", c->node_key, c->node_name, "PX", ttl};
    size_t lens[5] = {3, strlen(c->node_key), strlen(c->node_name), 2,
                      (size_t)snprintf(ttl, sizeof(ttl), "%u", c->ttl_ms)};
    app_redis_cmd(l->cmd, on_heartbeat_reply, l, 5, argv, lens); /* down: next beat */
}

static void on_cmd_state(app_redis *r, bool up, void *ud)
{
    app_cluster_link *l = ud;
    (void)r;
    if (up)
        heartbeat(l); /* at once: a node is alive as soon as it can write */
    else
        app_redis_reset(l->sub); /* its messages may be missed too: say so */
    tell(l);
}

static void on_sub_state(app_redis *r, bool up, void *ud)
{
    (void)r;
    (void)up;
    tell(ud);
}

static void on_beat_closed(uv_handle_t *h)
{
    app_cluster *c = h->data;
    free(c->fns);
    free(c);
}

static void on_beat(uv_timer_t *t)
{
    app_cluster *c = t->data;
    if (c->stopping) {
        /* Stopping: the modules sent their last commands; close once they
         * are answered, or at the deadline. */
        bool idle = true;
        for (size_t i = 0; i < c->nlinks; i++)
            idle = idle && app_redis_pending(c->links[i].cmd) == 0;
        if (!idle && uv_now(t->loop) < c->stop_deadline)
            return;
        for (size_t i = 0; i < c->nlinks; i++) {
            app_redis_free(c->links[i].cmd);
            app_redis_free(c->links[i].sub);
            c->links[i].cmd = c->links[i].sub = NULL;
        }
        app_server_set_ext(c->srv, APP_EXT_CLUSTER, NULL);
        uv_close((uv_handle_t *)&c->beat, on_beat_closed);
        return;
    }
    for (size_t i = 0; i < c->nlinks; i++)
        heartbeat(&c->links[i]);
}

static void on_shutdown(app_server *s, void *ud)
{
    app_cluster *c = ud;
    (void)s;
    c->stopping = true;
    c->stop_deadline = uv_now(app_server_loop(c->srv)) + STOP_DRAIN_MS;
    for (size_t i = 0; i < c->nlinks; i++) {
        const char *argv[2] = {"DEL", c->node_key};
        size_t lens[2] = {3, strlen(c->node_key)};
        app_redis_cmd(c->links[i].cmd, NULL, NULL, 2, argv, lens);
    }
    uv_timer_start(&c->beat, on_beat, 10, 10);
}

static int add_link(app_cluster *c, const char *addr)
{
    for (size_t i = 0; i < c->nlinks; i++)
        if (strcmp(c->links[i].addr, addr) == 0)
            return 0;
    if (c->nlinks == MAX_LINKS)
        return SH_ELIMIT;
    app_cluster_link *l = &c->links[c->nlinks];
    char host[64];
    int port;
    if (strlen(addr) >= sizeof(l->addr) ||
        app_config_split_hostport(addr, host, sizeof(host), &port) != 0)
        return SH_EINVAL;
    const app_config *cfg = app_server_config(c->srv);
    snprintf(l->addr, sizeof(l->addr), "%s", addr);
    l->c = c;
    app_redis_opts o = {.host = host, .port = port, .name = "cmd",
                        .timeout_ms = cfg->cluster_timeout_ms, .on_state = on_cmd_state,
                        .ud = l, .wait_replicas = cfg->cluster_wait_replicas,
                        .wait_timeout_ms = cfg->cluster_wait_timeout_ms};
    l->cmd = app_redis_new(app_server_loop(c->srv), &o);
    o.name = "sub";
    o.wait_replicas = 0; /* nothing is written there */
    o.on_state = on_sub_state;
    l->sub = app_redis_new(app_server_loop(c->srv), &o);
    if (!l->cmd || !l->sub) {
        app_redis_free(l->cmd);
        app_redis_free(l->sub);
        return SH_ENOMEM;
    }
    c->nlinks++;
    return 0;
}

int app_cluster_register(app_server *srv)
{
    const app_config *cfg = app_server_config(srv);
    bool any = *cfg->cluster_redis != '\0';
    for (size_t i = 0; i < cfg->napps && !any; i++)
        any = app_config_app_redis(cfg, &cfg->apps[i]) != NULL;
    if (!any)
        return 0;
    app_cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return SH_ENOMEM;
    c->srv = srv;
    c->ttl_ms = cfg->cluster_node_ttl_ms;
    uint8_t rnd[8];
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        free(c);
        return SH_EINVAL;
    }
    for (int i = 0; i < 8; i++)
        snprintf(c->node_id + 2 * i, 3, "%02x", rnd[i]);
    snprintf(c->node_key, sizeof(c->node_key), "sohub:node:%s", c->node_id);
    if (*cfg->cluster_node)
        snprintf(c->node_name, sizeof(c->node_name), "%s", cfg->cluster_node);
    else
        snprintf(c->node_name, sizeof(c->node_name), "%s", cfg->listen);
    uv_timer_init(app_server_loop(srv), &c->beat);
    c->beat.data = c;
    int rc = 0;
    if (*cfg->cluster_redis)
        rc = add_link(c, cfg->cluster_redis);
    for (size_t i = 0; i < cfg->napps && rc == 0; i++) {
        const char *a = app_config_app_redis(cfg, &cfg->apps[i]);
        if (a)
            rc = add_link(c, a);
    }
    if (rc == 0)
        rc = app_server_on_shutdown(srv, on_shutdown, c);
    if (rc) {
        for (size_t i = 0; i < c->nlinks; i++) {
            app_redis_free(c->links[i].cmd);
            app_redis_free(c->links[i].sub);
        }
        uv_close((uv_handle_t *)&c->beat, on_beat_closed);
        return rc;
    }
    uint32_t every = c->ttl_ms / 3 ? c->ttl_ms / 3 : 1;
    uv_timer_start(&c->beat, on_beat, every, every);
    uv_unref((uv_handle_t *)&c->beat); /* the links' own timers keep the loop */
    app_server_set_ext(srv, APP_EXT_CLUSTER, c);
    SH_LOG(SH_LOG_INFO, "cluster: node %s (%s), %zu Redis link(s)", c->node_id, c->node_name,
           c->nlinks);
    return 0;
}

app_cluster *app_cluster_of(const app_server *srv)
{
    return app_server_ext(srv, APP_EXT_CLUSTER);
}

app_cluster_link *app_cluster_link_for(app_cluster *c, const char *app)
{
    if (!c)
        return NULL;
    const app_config *cfg = app_server_config(c->srv);
    const char *addr = app_config_app_redis(cfg, app_config_find_app(cfg, app));
    if (!addr)
        return NULL;
    for (size_t i = 0; i < c->nlinks; i++)
        if (strcmp(c->links[i].addr, addr) == 0)
            return &c->links[i];
    return NULL; /* configured after start (reload): not clustered until a restart */
}

app_cluster_link *app_cluster_link_next(app_cluster *c, size_t *iter)
{
    if (!c || *iter >= c->nlinks)
        return NULL;
    return &c->links[(*iter)++];
}

const char *app_cluster_node_id(const app_cluster *c) { return c->node_id; }
const char *app_cluster_node_name(const app_cluster *c) { return c->node_name; }
uint32_t app_cluster_node_ttl_ms(const app_cluster *c) { return c->ttl_ms; }

int app_cluster_add_script(app_cluster *c, const app_redis_script *s)
{
    for (size_t i = 0; i < c->nlinks; i++)
        if (app_redis_add_script(c->links[i].cmd, s) != 0)
            return SH_ENOMEM;
    return 0;
}

int app_cluster_on_state(app_cluster *c, app_cluster_state_fn fn, void *ud)
{
    state_fn *n = realloc(c->fns, (c->nfns + 1) * sizeof(*n));
    if (!n)
        return SH_ENOMEM;
    c->fns = n;
    c->fns[c->nfns++] = (state_fn){fn, ud};
    return 0;
}

app_redis *app_cluster_cmd(app_cluster_link *l) { return l->cmd; }
app_redis *app_cluster_sub(app_cluster_link *l) { return l->sub; }
bool app_cluster_link_up(const app_cluster_link *l) { return l->up; }
const char *app_cluster_link_addr(const app_cluster_link *l) { return l->addr; }
uint64_t app_cluster_link_downs(const app_cluster_link *l) { return l->downs; }
