/* samples.h - the sample applications served by sohub-server.
 *
 *   chat       group chat room (persistent `room` object, room.post),
 *              presence, and the one-to-one chat of app/chat
 *   auction    live auction (server-only item objects, auction.bid)
 *   slideshow  one presenter drives a `show` object, viewers follow
 *
 * Each is registered under its name, so it is served with no config file
 * and also when a config file declares other [app] sections; an
 * [app NAME] section still applies its usual keys (auth, store, users,
 * presence ...).  Settings of the samples themselves (room size, auction
 * admin and timing, presenter) have defaults (samples.c) and can be set
 * in the server's config file, sections [sample chat], [sample auction]
 * and [sample slideshow] (samples/README.md); unknown keys stop the start.
 *
 * Threading: the server's loop thread only.
 */
#ifndef SAMPLES_H
#define SAMPLES_H

#include "app.h"

/* Registers the three applications on srv, after the shared-object glue
 * was created (app_so_glue_new) and before app_server_run().  Returns 0,
 * or a negative code when the settings file is bad or the glue is missing
 * (logged; the applications that could be registered stay). */
int samples_register(app_server *srv);

#endif
