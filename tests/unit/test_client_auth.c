/*
 * Unit tests of the relay client's SMTP AUTH (RFC 4954) in its protocol
 * machine (client_proto.c), upstream replies scripted line by line: the
 * EHLO's AUTH keyword (and the old AUTH= form), PLAIN's initial response
 * (RFC 4616), LOGIN's exchange, 235/535/454, a 334 where none is due, no
 * known mechanism, no AUTH without TLS unless allowed, AUTH after STARTTLS
 * and the second EHLO, and what the log is shown of each line.
 */
#include "client_proto.h"
#include "unit_util.h"

#define USER "relay@example.com"
#define PASS "s3cr:et pass"
/* base64 of "\0" USER "\0" PASS, of USER and of PASS */
#define PLAIN_B64 "AHJlbGF5QGV4YW1wbGUuY29tAHMzY3I6ZXQgcGFzcw=="
#define USER_B64 "cmVsYXlAZXhhbXBsZS5jb20="
#define PASS_B64 "czNjcjpldCBwYXNz"

/* What the machine wrote: the last command and what a log is shown. */
struct out {
    char last[1024];
    char shown[1024];
    int n;
};

static void on_command(void *arg, const char *line, size_t len, const char *shown)
{
    struct out *o = arg;
    snprintf(o->last, sizeof(o->last), "%.*s", (int)len, line);
    snprintf(o->shown, sizeof(o->shown), "%s", shown ? shown : o->last);
    o->n++;
}

static void on_data(void *arg, const char *buf, size_t len)
{
    (void)arg;
    (void)buf;
    (void)len;
}

struct fix {
    struct client_proto p;
    struct out o;
    struct client_reply r;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    cp_init(&f->p, false, "relay.example", (struct cp_out){on_command, on_data, &f->o});
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    cp_free(&f->p);
    free(f);
    return 0;
}

/* Feed the reply lines of @p lines ("\n"-separated), the last one's event. */
static enum cp_event feed(struct fix *f, const char *lines)
{
    enum cp_event ev = CP_MORE;
    while (*lines) {
        size_t n = strcspn(lines, "\n");
        ev = cp_line(&f->p, lines, n, true, &f->r);
        lines += n + (lines[n] == '\n');
    }
    return ev;
}

/* Connect, get the greeting, and answer EHLO with keyword lines @p ehlo. */
static enum cp_event open_with(struct fix *f, const char *ehlo)
{
    cp_connected(&f->p);
    assert_int_equal(feed(f, "220 up.example ESMTP"), CP_MORE);
    assert_string_equal(f->o.last, "EHLO relay.example\r\n");
    return feed(f, ehlo);
}

static void assert_auth_failed(struct fix *f, enum cp_event ev, bool config_error)
{
    assert_int_equal(ev, CP_FAILED);
    assert_int_equal(f->r.code, 451);
    assert_string_equal(f->r.enh, "4.7.0");
    assert_true(f->r.local);
    assert_int_equal(f->p.config_error, config_error);
    assert_null(strstr(f->p.why, PASS));
    assert_null(strstr(f->p.why, PASS_B64));
}

static void test_no_credentials_no_auth(void **state)
{
    struct fix *f = *state;
    assert_int_equal(open_with(f, "250-up.example\n250 AUTH PLAIN LOGIN"), CP_REPLY);
    assert_int_equal(f->r.code, 250);
    assert_true(cp_ready(&f->p));
    assert_int_equal(f->o.n, 1); /* EHLO only */
}

static void test_plain_with_initial_response(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    assert_int_equal(open_with(f, "250-up.example\n250 AUTH LOGIN PLAIN"), CP_MORE);
    assert_string_equal(f->o.last, "AUTH PLAIN " PLAIN_B64 "\r\n");
    assert_string_equal(f->o.shown, "AUTH PLAIN [credentials not logged]");
    assert_false(cp_ready(&f->p));
    assert_int_equal(feed(f, "235 2.7.0 Authentication successful"), CP_REPLY);
    assert_int_equal(f->r.code, 250);
    assert_false(f->r.local);
    assert_true(cp_ready(&f->p));
    /* Authenticated for the session: MAIL, RSET and MAIL again, no AUTH. */
    cp_mail(&f->p, "a@example.com", "");
    assert_int_equal(feed(f, "250 OK"), CP_REPLY);
    cp_rset(&f->p);
    assert_int_equal(feed(f, "250 OK"), CP_REPLY);
    cp_mail(&f->p, "a@example.com", "");
    assert_string_equal(f->o.last, "MAIL FROM:<a@example.com>\r\n");
    assert_int_equal(f->o.n, 5);
}

static void test_old_auth_equals_form(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    assert_int_equal(open_with(f, "250-up.example\n250-AUTH=login plain\n250 SIZE 100"), CP_MORE);
    assert_string_equal(f->o.last, "AUTH PLAIN " PLAIN_B64 "\r\n");
}

static void test_login_when_plain_is_not_offered(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    assert_int_equal(open_with(f, "250-up.example\n250 AUTH CRAM-MD5 LOGIN"), CP_MORE);
    assert_string_equal(f->o.last, "AUTH LOGIN\r\n");
    assert_int_equal(feed(f, "334 VXNlcm5hbWU6"), CP_MORE);
    assert_string_equal(f->o.last, USER_B64 "\r\n");
    assert_string_equal(f->o.shown, "[AUTH LOGIN username not logged]");
    assert_int_equal(feed(f, "334 UGFzc3dvcmQ6"), CP_MORE);
    assert_string_equal(f->o.last, PASS_B64 "\r\n");
    assert_string_equal(f->o.shown, "[AUTH LOGIN password not logged]");
    assert_int_equal(feed(f, "235 2.7.0 OK"), CP_REPLY);
    assert_int_equal(f->r.code, 250);
    assert_true(cp_ready(&f->p));
}

static void test_refused_credentials(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    open_with(f, "250-up.example\n250 AUTH PLAIN");
    assert_auth_failed(f, feed(f, "535 5.7.8 Authentication credentials invalid"), true);
    assert_string_equal(f->p.why, "AUTH refused: 535 5.7.8 Authentication credentials invalid");
    assert_int_equal(f->p.st, CP_DEAD);
}

static void test_refused_login_password(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    open_with(f, "250-up.example\n250 AUTH LOGIN");
    feed(f, "334 VXNlcm5hbWU6\n334 UGFzc3dvcmQ6");
    assert_auth_failed(f, feed(f, "535 5.7.8 no"), true);
}

static void test_temporary_failure(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    open_with(f, "250-up.example\n250 AUTH PLAIN");
    assert_auth_failed(f, feed(f, "454 4.7.0 Temporary authentication failure"), false);
}

/* Replies AUTH does not allow are upstream protocol errors: 451 4.4.0. */
static void test_replies_out_of_protocol(void **state)
{
    static const struct {
        const char *ehlo, *dialogue;
    } rows[] = {
        {"250-up\n250 AUTH PLAIN", "334 "},                     /* PLAIN sent all it has */
        {"250-up\n250 AUTH PLAIN", "250 OK"},                   /* not 235 */
        {"250-up\n250 AUTH LOGIN", "235 2.7.0 OK"},             /* before the username */
        {"250-up\n250 AUTH LOGIN", "334 VXNlcm5hbWU6\n235 OK"}, /* before the password */
        {"250-up\n250 AUTH LOGIN", "334 VXNlcm5hbWU6\n334 UGFzc3dvcmQ6\n334 x"}, /* after it */
    };
    for (size_t i = 0; i < N_ROWS(rows); i++) {
        struct fix *f = *state;
        cp_free(&f->p);
        memset(f, 0, sizeof(*f));
        cp_init(&f->p, false, "relay.example", (struct cp_out){on_command, on_data, &f->o});
        cp_set_auth(&f->p, USER, PASS, true);
        open_with(f, rows[i].ehlo);
        assert_int_equal(feed(f, rows[i].dialogue), CP_FAILED);
        assert_int_equal(f->r.code, 451);
        assert_string_equal(f->r.enh, "4.4.0");
        assert_non_null(strstr(f->p.why, "protocol error"));
    }
}

static void test_no_known_mechanism(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    assert_auth_failed(f, open_with(f, "250-up.example\n250 AUTH CRAM-MD5 XOAUTH2"), true);
    assert_string_equal(f->p.why, "the upstream does not offer AUTH PLAIN or LOGIN");
    assert_int_equal(f->o.n, 1); /* no AUTH */
}

static void test_no_auth_keyword(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    assert_auth_failed(f, open_with(f, "250-up.example\n250-AUTHX PLAIN\n250 SIZE 10"), true);
}

/* "may" without STARTTLS offered: plaintext, so no AUTH at all. */
static void test_no_auth_without_tls(void **state)
{
    struct fix *f = *state;
    cp_set_tls(&f->p, CP_TLS_MAY, false);
    cp_set_auth(&f->p, USER, PASS, false);
    assert_auth_failed(f, open_with(f, "250-up.example\n250 AUTH PLAIN LOGIN"), true);
    assert_int_equal(f->o.n, 1);
    assert_non_null(strstr(f->p.why, "no TLS, so no AUTH"));
}

/* "may" with STARTTLS refused: no AUTH in plaintext either. */
static void test_no_auth_after_refused_starttls(void **state)
{
    struct fix *f = *state;
    cp_set_tls(&f->p, CP_TLS_MAY, false);
    cp_set_auth(&f->p, USER, PASS, false);
    assert_int_equal(open_with(f, "250-up.example\n250-AUTH PLAIN\n250 STARTTLS"), CP_MORE);
    assert_string_equal(f->o.last, "STARTTLS\r\n");
    assert_auth_failed(f, feed(f, "454 4.7.0 TLS not available"), true);
    assert_int_equal(f->o.n, 2);
    assert_non_null(strstr(f->p.why, "STARTTLS refused"));
}

/* AUTH comes after STARTTLS and the second EHLO, from its keywords. */
static void test_auth_after_starttls(void **state)
{
    struct fix *f = *state;
    cp_set_tls(&f->p, CP_TLS_MUST, false);
    cp_set_auth(&f->p, USER, PASS, false);
    /* Before TLS the upstream offers PLAIN; inside it, LOGIN only. */
    assert_int_equal(open_with(f, "250-up.example\n250-AUTH PLAIN\n250 STARTTLS"), CP_MORE);
    assert_string_equal(f->o.last, "STARTTLS\r\n");
    assert_int_equal(feed(f, "220 2.0.0 go ahead"), CP_START_TLS);
    cp_tls_done(&f->p);
    assert_string_equal(f->o.last, "EHLO relay.example\r\n");
    assert_int_equal(feed(f, "250-up.example\n250 AUTH LOGIN"), CP_MORE);
    assert_string_equal(f->o.last, "AUTH LOGIN\r\n");
}

/* Losing the connection or a timeout in AUTH: the usual 451 4.4.1. */
static void test_lost_during_auth(void **state)
{
    struct fix *f = *state;
    cp_set_auth(&f->p, USER, PASS, true);
    open_with(f, "250-up.example\n250 AUTH PLAIN");
    assert_string_equal(cp_step_name(f->p.st, false), "AUTH PLAIN");
    cp_lost(&f->p, "no reply to AUTH PLAIN within 60 s", &f->r);
    assert_int_equal(f->r.code, 451);
    assert_string_equal(f->r.enh, "4.4.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_credentials_no_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_with_initial_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_auth_equals_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_when_plain_is_not_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_login_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temporary_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replies_out_of_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_known_mechanism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_auth_keyword, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_auth_without_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_auth_after_refused_starttls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_after_starttls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_during_auth, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
