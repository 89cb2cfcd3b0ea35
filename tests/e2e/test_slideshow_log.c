/* test_slideshow_log.c - the slideshow sample logs the name a presenter
 * hands over to, a string the client chooses: control characters in it
 * must not reach the server log as they are, or a client could start a
 * forged log line (log injection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_chat_client.h"

#define FORGED "2030-01-01T00:00:00.000Z INFO  conn=999 forged line"

int main(void)
{
    e2e_server s;
    if (e2e_server_start(&s, NULL, NULL) != 0)
        return 1;
    char code[128], desc[256];
    cc *alice = cc_connect(s.port, "slideshow/logtest", "alice", NULL, NULL, code, desc,
                           sizeof code);
    E2E_CHECK(alice != NULL, "alice connected first: she presents (%s)", alice ? "" : code);
    amf_value *to = amf_string_cstr("mallory\n" FORGED "\r\x1b[2J");
    cc_answer a;
    E2E_CHECK(alice && cc_call(alice, "slideshow.handoff", &to, 1, &a) == 0 && a.ok,
              "she hands over to a name with a newline, a CR and an escape sequence");
    amf_unref(to);
    cc_close(alice);
    E2E_CHECK(e2e_log_wait(&s, "hands slideshow/logtest over to", 3000),
              "the hand-off is logged");
    char *log = e2e_read_file(s.log_path, NULL);
    E2E_CHECK(log && strstr(log, "over to mallory?" FORGED "??[2J"),
              "the name is logged with its control characters replaced by '?'");
    E2E_CHECK(log && !strstr(log, "\n" FORGED) && !strchr(log, '\x1b') && !strchr(log, '\r'),
              "no forged line, no escape, no carriage return in the log");
    free(log);
    int st = e2e_server_stop(&s, e2e_failures > 0);
    E2E_CHECK(st == 0, "server stopped cleanly (%d)", st);
    printf("1..%d\n", e2e_checks);
    return e2e_failures ? 1 : 0;
}
