/* api.h - the operators' and backends' listener (admin_listen): the server
 * API (/api/v1, docs/api.md), /metrics (Prometheus), /healthz, /readyz,
 * and the admin page's files (admin_root).
 *
 * Every /api/v1 request carries an API key ([api_key NAME] sections:
 * "Authorization: Bearer SECRET" or "X-Api-Key: SECRET"), compared in
 * constant time; a read key may GET, a write key may do anything.
 * /metrics, /healthz and /readyz need no key: admin_listen belongs on a
 * private address (it is off unless set; make run puts it on loopback).
 *
 * Writes go through the same engine and chat paths as clients' (one
 * version per request, the same events to subscribers, the same
 * durability: a persistent write or a private message is answered once
 * stored).  A POST or DELETE with an Idempotency-Key header is applied
 * once: a retry within 24 hours gets the first answer.
 */
#ifndef APP_API_H
#define APP_API_H

#include "app.h"

/* Installs the handlers on srv's admin listener.  Call after the SO glue
 * and chat are registered, before app_server_start.  Returns 0 or
 * SH_ENOMEM. */
int app_api_register(app_server *srv);

#endif
