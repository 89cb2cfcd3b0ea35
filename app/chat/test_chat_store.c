/* test_chat_store.c - unit tests of the chat store (app/chat/chat_store.c):
 * messages and counters written in one transaction, read back in id
 * order from the reader connection, acknowledged rows deleted, data kept
 * across a reopen, and tables shared with another schema in the same file. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_store.h"
#include "sh_err.h"

static char dir[256];
static char path[320];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/sohub-chat-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sohub.db", dir);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(chat_store, .init = setup, .fini = teardown);

typedef struct seen {
    uint64_t ids[16];
    char text[16][32];
    char sender[16][32];
    size_t n;
} seen;

static int collect(void *ud, uint64_t id, const char *sender, int64_t ts, const char *text,
                   size_t text_len)
{
    seen *s = ud;
    cr_assert_gt(ts, 0);
    if (s->n < 16) {
        s->ids[s->n] = id;
        snprintf(s->text[s->n], 32, "%.*s", (int)text_len, text);
        snprintf(s->sender[s->n], 32, "%s", sender);
        s->n++;
    }
    return 0;
}

static chat_store_op msg(const char *user, uint64_t id, const char *text)
{
    return (chat_store_op){.is_msg = true, .app = "chat", .user = user, .id = id,
                           .sender = "alice", .ts = 1700000000000 + (int64_t)id, .text = text,
                           .text_len = strlen(text)};
}

static chat_store_op counters(const char *user, uint64_t last, uint64_t acked)
{
    return (chat_store_op){.is_msg = false, .app = "chat", .user = user, .last_id = last,
                           .acked = acked};
}

Test(chat_store, write_then_read_in_order)
{
    chat_store *s;
    char err[256];
    cr_assert_eq(chat_store_open(path, &s, err, sizeof err), 0, "%s", err);
    uint64_t last = 9, acked = 9;
    cr_assert_eq(chat_store_load_user(s, "chat", "bob", &last, &acked), 0);
    cr_assert(last == 0 && acked == 0, "unknown user: 0/0");
    chat_store_op ops[] = {msg("bob", 2, "two"), msg("bob", 1, "one"), msg("bob", 3, "three"),
                           msg("carol", 1, "for carol"), counters("bob", 3, 0),
                           counters("carol", 1, 0)};
    cr_assert_eq(chat_store_write(s, ops, 6), 0);
    cr_assert_eq(chat_store_load_user(s, "chat", "bob", &last, &acked), 0);
    cr_assert(last == 3 && acked == 0);
    seen x = {0};
    cr_assert_eq(chat_store_load_messages(s, "chat", "bob", 0, 100, collect, &x), 0);
    cr_assert_eq(x.n, 3);
    cr_assert(x.ids[0] == 1 && x.ids[1] == 2 && x.ids[2] == 3, "id order");
    cr_assert_str_eq(x.text[0], "one");
    cr_assert_str_eq(x.sender[2], "alice");
    seen y = {0};
    cr_assert_eq(chat_store_load_messages(s, "chat", "bob", 1, 1, collect, &y), 0);
    cr_assert(y.n == 1 && y.ids[0] == 2, "after and max respected");
    seen z = {0};
    cr_assert_eq(chat_store_load_messages(s, "other", "bob", 0, 100, collect, &z), 0);
    cr_assert_eq(z.n, 0, "another application has its own users");
    chat_store_close(s);
}

Test(chat_store, ack_deletes_and_survives_reopen)
{
    chat_store *s;
    char err[256];
    cr_assert_eq(chat_store_open(path, &s, err, sizeof err), 0, "%s", err);
    chat_store_op ops[] = {msg("bob", 1, "a"), msg("bob", 2, "b"), msg("bob", 3, "c"),
                           counters("bob", 3, 2)};
    cr_assert_eq(chat_store_write(s, ops, 4), 0);
    chat_store_close(s);

    cr_assert_eq(chat_store_open(path, &s, err, sizeof err), 0, "%s", err);
    uint64_t last, acked;
    cr_assert_eq(chat_store_load_user(s, "chat", "bob", &last, &acked), 0);
    cr_assert(last == 3 && acked == 2, "counters kept (%llu/%llu)", (unsigned long long)last,
              (unsigned long long)acked);
    seen x = {0};
    cr_assert_eq(chat_store_load_messages(s, "chat", "bob", 0, 100, collect, &x), 0);
    cr_assert(x.n == 1 && x.ids[0] == 3, "acknowledged rows are gone");
    chat_store_close(s);
}

Test(chat_store, failed_transaction_writes_nothing)
{
    chat_store *s;
    char err[256];
    cr_assert_eq(chat_store_open(path, &s, err, sizeof err), 0, "%s", err);
    /* A NULL sender violates NOT NULL: the whole batch rolls back. */
    chat_store_op bad = msg("bob", 2, "x");
    bad.sender = NULL;
    chat_store_op ops[] = {msg("bob", 1, "ok"), counters("bob", 2, 0), bad};
    cr_assert_eq(chat_store_write(s, ops, 3), SH_EIO);
    uint64_t last, acked;
    cr_assert_eq(chat_store_load_user(s, "chat", "bob", &last, &acked), 0);
    cr_assert_eq(last, 0);
    seen x = {0};
    chat_store_load_messages(s, "chat", "bob", 0, 100, collect, &x);
    cr_assert_eq(x.n, 0);
    /* The store still works afterwards. */
    chat_store_op good[] = {msg("bob", 1, "ok"), counters("bob", 1, 0)};
    cr_assert_eq(chat_store_write(s, good, 2), 0);
    chat_store_close(s);
}

Test(chat_store, shares_the_file_with_other_tables)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE objects(x);"
                                  "INSERT INTO objects VALUES(1);",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    chat_store *s;
    char err[256];
    cr_assert_eq(chat_store_open(path, &s, err, sizeof err), 0, "%s", err);
    chat_store_op ops[] = {msg("bob", 1, "hi"), counters("bob", 1, 0)};
    cr_assert_eq(chat_store_write(s, ops, 2), 0);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM objects", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 1, "the other module's table is untouched");
    sqlite3_finalize(st);
    chat_store_close(s);
    sqlite3_close(db);
}

static int64_t count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* On connections another module owns (the store module's): chat's
 * operations join that module's transaction, committed or rolled back
 * with its own rows, and pages are copied out. */
Test(chat_store, attached_ops_share_the_callers_transaction)
{
    sqlite3 *w, *r;
    cr_assert_eq(sqlite3_open(path, &w), SQLITE_OK);
    cr_assert_eq(sqlite3_open(path, &r), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(w, "PRAGMA journal_mode=WAL; CREATE TABLE objects(x);", NULL,
                              NULL, NULL), SQLITE_OK);
    chat_store *s;
    char err[256];
    cr_assert_eq(chat_store_attach(w, r, &s, err, sizeof err), 0, "%s", err);
    chat_store_op ops[] = {msg("bob", 1, "one"), msg("bob", 2, "two"), counters("bob", 2, 0)};
    /* rolled back: neither module's rows stay */
    cr_assert_eq(sqlite3_exec(w, "BEGIN IMMEDIATE; INSERT INTO objects VALUES(1);", NULL, NULL,
                              NULL), SQLITE_OK);
    cr_assert_eq(chat_store_apply(s, ops, 3), 0);
    cr_assert_eq(sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(count_rows(r, "SELECT count(*) FROM objects"), 0);
    cr_assert_eq(count_rows(r, "SELECT count(*) FROM chat_messages"), 0);
    /* committed: both */
    cr_assert_eq(sqlite3_exec(w, "BEGIN IMMEDIATE; INSERT INTO objects VALUES(1);", NULL, NULL,
                              NULL), SQLITE_OK);
    cr_assert_eq(chat_store_apply(s, ops, 3), 0);
    cr_assert_eq(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(count_rows(r, "SELECT count(*) FROM objects"), 1);
    chat_store_msg *m = NULL;
    size_t n = 0;
    cr_assert_eq(chat_store_read_page(s, "chat", "bob", 0, 10, &m, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert(m[0].id == 1 && m[1].id == 2, "id order");
    cr_assert_str_eq(m[1].text, "two");
    cr_assert_eq(m[1].text_len, 3);
    cr_assert_str_eq(m[0].sender, "alice");
    chat_store_msgs_free(m, n);
    cr_assert_eq(chat_store_read_page(s, "chat", "bob", 2, 10, &m, &n), 0);
    cr_assert(n == 0 && m == NULL, "nothing after the last id");
    chat_store_close(s);
    /* the connections are the caller's: still open */
    cr_assert_eq(count_rows(r, "SELECT count(*) FROM chat_users"), 1);
    sqlite3_close(w);
    sqlite3_close(r);
}
