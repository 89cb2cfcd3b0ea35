/* rtmp_limits.c - default limits and connection configuration. */
#include "rtmp.h"

#include <string.h>

const rtmp_limits rtmp_default_limits = {
    .max_chunk_size = RTMP_DEFAULT_MAX_CHUNK_SIZE,
    .max_message_size = RTMP_DEFAULT_MAX_MESSAGE_SIZE,
    .max_chunk_streams = RTMP_DEFAULT_MAX_CHUNK_STREAMS,
    .max_buffered = RTMP_DEFAULT_MAX_BUFFERED,
};

void rtmp_conn_config_default(rtmp_conn_config *c, rtmp_role role)
{
    memset(c, 0, sizeof(*c));
    c->role = role;
    c->limits = rtmp_default_limits;
    c->out_chunk_size = 4096;
    c->window_ack_size = 2500000;
    c->client_digest = false;
}
