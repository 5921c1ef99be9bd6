/*
 * ovn-k8s-cni-overlay: the CNI executable installed on each node.
 *
 * A thin shim (no dependencies beyond libc, so it runs on nodes without Python): it forwards
 * the CNI request -- every CNI_* environment variable plus the network configuration read from
 * stdin -- over a unix socket to the ovnvnet node agent, which does the real work with warm
 * clients. It prints the agent's answer on stdout and exits with its exit code.
 *
 * Wire protocol (one request per connection):
 *   shim  -> agent: {"env": {"CNI_COMMAND": "...", ...}, "config": "<stdin, as a JSON string>"}
 *                   then shutdown(SHUT_WR)
 *   agent -> shim : "<exit code>\n" followed by the bytes to print on stdout, then close.
 *
 * Contract:
 * - Every failure of the shim itself prints a CNI error object on stdout ({"cniVersion",
 *   "code", "msg", "details"}; cniVersion from the configuration, else 1.0.0) and exits 1.
 *   SIGPIPE is ignored: an agent (or runtime) that closes early is an error, never a silent
 *   death. An agent answer with a non-zero exit code and no body gets our error object too.
 * - Input limit: MAX_INPUT raw bytes for stdin plus every CNI_* environment entry ("NAME=VALUE"),
 *   checked before connecting. JSON escaping turns one byte into at most 6 ("\u00XX"), so the
 *   request is at most 6 * MAX_INPUT + 32 bytes; the agent accepts 6 * MAX_INPUT + 64
 *   (ovnvnet/cni/protocol.py: MAX_INPUT_BYTES, MAX_REQUEST_BYTES).
 * - Trust: after connecting we ask the kernel who serves the socket (SO_PEERCRED, the
 *   credentials of the process that called listen()); we send nothing unless that is root (or
 *   our own euid, which is root whenever a runtime runs us). The path is not trusted.
 * - One total deadline covers connect, send and receive: config "agentTimeout" seconds, default
 *   max(600, annotationTimeout + ovnInstalledTimeout + 60); the error names the phase that ran
 *   out ("connecting to", "sending the request to", "waiting for the answer of").
 *
 * Socket path: env OVNVNET_AGENT_SOCKET (tests), else config key "agentSocket", else
 * /var/run/ovnvnet/cni.sock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/var/run/ovnvnet/cni.sock"
#define MAX_INPUT (1024 * 1024)
#define MAX_REQUEST (6 * MAX_INPUT + 64)
#define MAX_REPLY (16 * 1024 * 1024)
#define DEFAULT_TIMEOUT_S 600.0
#define TIMEOUT_MARGIN_S 60.0
#define MAX_TIMEOUT_S 86400.0

/* CNI error codes (spec: 4 env, 5 I/O, 6 decode, 7 config, 11 try again later; ours 100+) */
#define ERR_INVALID_ENV 4
#define ERR_IO 5
#define ERR_INVALID_CONFIG 7
#define ERR_TRY_AGAIN_LATER 11
#define ERR_UNTRUSTED_AGENT 100
#define ERR_INTERNAL 999

extern char **environ;

/* A byte buffer; a `fixed` one never allocates and drops what does not fit. */
struct buf {
    char *data;
    size_t len, cap;
    int fixed;
};

static void cni_fail(int code, const char *msg, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

static int buf_room(struct buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap)
        return 1;
    if (b->fixed)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        cni_fail(ERR_INTERNAL, "ovn-k8s-cni-overlay: out of memory", "wanted %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return 1;
}

static void buf_add(struct buf *b, const char *s, size_t n) {
    if (!buf_room(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Append s as a JSON string literal (quotes included); at most 6 bytes per input byte. */
static void buf_add_json_string(struct buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_adds(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_adds(b, "\\\""); break;
        case '\\': buf_adds(b, "\\\\"); break;
        case '\n': buf_adds(b, "\\n"); break;
        case '\r': buf_adds(b, "\\r"); break;
        case '\t': buf_adds(b, "\\t"); break;
        default:
            if (c < 0x20) {
                char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
                buf_adds(b, esc);
            } else {
                buf_add(b, (const char *)&c, 1);
            }
        }
    }
    buf_adds(b, "\"");
}

static void write_fd(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nobody to tell: SIGPIPE is ignored, EPIPE ends here */
        data += n;
        len -= (size_t)n;
    }
}

static const char *cni_version = "1.0.0";

/*
 * Print a CNI error object on stdout and exit 1. Allocates nothing (it is also the
 * out-of-memory path): msg <= 512 and details <= 1024 bytes escape to at most 9 KiB.
 */
static void cni_fail(int code, const char *msg, const char *fmt, ...) {
    static char out_space[16384], details[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details, sizeof details, fmt, ap);
    va_end(ap);
    struct buf out = {out_space, 0, sizeof out_space, 1};
    char codes[48];
    buf_adds(&out, "{\"cniVersion\": ");
    buf_add_json_string(&out, cni_version, strnlen(cni_version, 64));
    snprintf(codes, sizeof codes, ", \"code\": %d, \"msg\": ", code);
    buf_adds(&out, codes);
    buf_add_json_string(&out, msg, strnlen(msg, 512));
    buf_adds(&out, ", \"details\": ");
    buf_add_json_string(&out, details, strlen(details));
    buf_adds(&out, "}\n");
    write_fd(1, out.data, out.len);
    struct buf err = {out_space, 0, sizeof out_space, 1}; /* stdout is written: reuse */
    buf_adds(&err, "ovn-k8s-cni-overlay: ");
    buf_add(&err, msg, strnlen(msg, 512));
    buf_adds(&err, ": ");
    buf_adds(&err, details);
    buf_adds(&err, "\n");
    write_fd(2, err.data, err.len);
    exit(1);
}

/*
 * Find a top-level member `key` of the JSON object in `json`; returns a pointer to its value
 * (after the colon and blanks) or NULL. Nested objects are skipped, so a key inside e.g.
 * prevResult never matches.
 */
static const char *json_top_value(const char *json, const char *key) {
    int depth = 0;
    const char *p = json;
    size_t klen = strlen(key);
    while (*p) {
        char c = *p;
        if (c == '"') {
            const char *start = ++p;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
            if (!*p)
                return NULL;
            const char *end = p++;
            if (depth != 1)
                continue;
            const char *q = p;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                q++;
            if (*q != ':')
                continue; /* a value, not a key */
            if ((size_t)(end - start) != klen || strncmp(start, key, klen) != 0)
                continue;
            q++;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
                q++;
            return q;
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        p++;
    }
    return NULL;
}

/* A top-level string member, unescaped (simple escapes only); 1 when found and complete. */
static int json_top_string(const char *json, const char *key, char *out, size_t outlen) {
    const char *q = json_top_value(json, key);
    if (!q || *q != '"')
        return 0;
    q++;
    size_t o = 0;
    while (*q && *q != '"') {
        if (*q == '\\' && q[1])
            q++;
        if (o + 1 < outlen)
            out[o++] = *q;
        q++;
    }
    out[o] = '\0';
    return *q == '"';
}

/* A top-level number member: 1 = found (in *out), 0 = absent, -1 = present but not a number. */
static int json_top_number(const char *json, const char *key, double *out) {
    const char *q = json_top_value(json, key);
    if (!q)
        return 0;
    if (!(*q == '-' || (*q >= '0' && *q <= '9')))
        return -1;
    char *end;
    *out = strtod(q, &end);
    return end == q ? -1 : 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- input --------------------------------------------------------------------------------- */

static size_t cni_env_bytes(void) {
    size_t n = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "CNI_", 4) == 0 && strchr(*e, '='))
            n += strlen(*e);
    return n;
}

static void read_config(struct buf *b, size_t env_bytes) {
    if (env_bytes > MAX_INPUT)
        cni_fail(ERR_INVALID_ENV, "the CNI_* environment is too large",
                 "%zu bytes; the limit for the environment plus the network configuration is %d "
                 "bytes", env_bytes, MAX_INPUT);
    size_t room = MAX_INPUT - env_bytes;
    char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cni_fail(ERR_IO, "cannot read the network configuration from stdin", "%s",
                     strerror(errno));
        }
        if (n == 0)
            break;
        if (b->len + (size_t)n > room)
            cni_fail(ERR_INVALID_CONFIG, "the network configuration is too large",
                     "more than %zu bytes on stdin with %zu bytes of CNI_* environment; the limit "
                     "for both together is %d bytes", room, env_bytes, MAX_INPUT);
        buf_add(b, chunk, (size_t)n);
    }
    if (!b->data)
        buf_add(b, "", 0);
}

static void build_request(struct buf *req, const struct buf *config) {
    buf_adds(req, "{\"env\": {");
    int first = 1;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "CNI_", 4) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        if (!first)
            buf_adds(req, ", ");
        first = 0;
        buf_add_json_string(req, *e, (size_t)(eq - *e));
        buf_adds(req, ": ");
        buf_add_json_string(req, eq + 1, strlen(eq + 1));
    }
    buf_adds(req, "}, \"config\": ");
    buf_add_json_string(req, config->data, config->len);
    buf_adds(req, "}");
    if (req->len > MAX_REQUEST) /* cannot happen: 6 bytes per input byte at most */
        cni_fail(ERR_INTERNAL, "ovn-k8s-cni-overlay: request larger than the agent accepts",
                 "%zu bytes > %d", req->len, MAX_REQUEST);
}

/* --- talking to the agent ------------------------------------------------------------------ */

struct conn {
    const char *sock;
    double timeout, deadline;
    int fd;
};

/* Milliseconds left before the deadline for poll(), or fail naming `phase`. */
static int remaining_ms(const struct conn *c, const char *phase, const char *progress) {
    double left = c->deadline - now_s();
    if (left <= 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "try again later: timed out %s the ovnvnet node agent", phase);
        cni_fail(ERR_TRY_AGAIN_LATER, msg,
                 "agentTimeout %gs (one deadline for connect, send and receive) ran out while %s "
                 "%s%s", c->timeout, phase, c->sock, progress);
    }
    return left * 1000.0 >= 1e9 ? 1000000000 : (int)(left * 1000.0) + 1;
}

static void connect_agent(struct conn *c) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(c->sock) >= sizeof addr.sun_path)
        cni_fail(ERR_INVALID_CONFIG, "agent socket path too long", "%s", c->sock);
    strcpy(addr.sun_path, c->sock);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        cni_fail(ERR_IO, "cannot create a unix socket", "%s", strerror(errno));
    /* A non-blocking unix connect either completes at once or says EAGAIN (backlog full). */
    while (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (errno == EAGAIN || errno == EINTR) {
            int ms = remaining_ms(c, "connecting to", "");
            struct timespec pause = {0, (ms < 5 ? ms : 5) * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        if (errno == ENOENT || errno == ECONNREFUSED)
            cni_fail(ERR_TRY_AGAIN_LATER, "try again later: the ovnvnet node agent is not running",
                     "connect(%s): %s", c->sock, strerror(errno));
        cni_fail(ERR_TRY_AGAIN_LATER, "try again later: cannot connect to the ovnvnet node agent",
                 "connect(%s): %s", c->sock, strerror(errno));
    }
}

/* The request carries pod identity and the agent acts on it as root: only root may serve it. */
static void check_peer(const struct conn *c) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        cni_fail(ERR_UNTRUSTED_AGENT, "cannot tell who serves the ovnvnet agent socket",
                 "getsockopt(%s, SO_PEERCRED): %s", c->sock, strerror(errno));
    if (cred.uid != 0 && cred.uid != geteuid())
        cni_fail(ERR_UNTRUSTED_AGENT,
                 "refusing the ovnvnet agent socket: it is not served by root",
                 "%s is served by pid %d with uid %u gid %u; the node agent runs as root",
                 c->sock, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
}

/* Returns 1 when everything was sent, 0 when the agent closed early (it may have answered). */
static int send_request(struct conn *c, const struct buf *req) {
    size_t sent = 0;
    char progress[96];
    while (sent < req->len) {
        ssize_t n = send(c->fd, req->data + sent, req->len - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EPIPE || errno == ECONNRESET)
            return 0;
        if (errno != EAGAIN)
            cni_fail(ERR_TRY_AGAIN_LATER,
                     "try again later: lost the connection to the ovnvnet node agent",
                     "sending to %s: %s", c->sock, strerror(errno));
        snprintf(progress, sizeof progress, " (%zu of %zu bytes sent)", sent, req->len);
        struct pollfd pfd = {c->fd, POLLOUT, 0};
        poll(&pfd, 1, remaining_ms(c, "sending the request to", progress));
    }
    shutdown(c->fd, SHUT_WR);
    return 1;
}

/* Reads until the agent closes; a reset after some data also ends the answer (the agent
 * closed without reading all of our request, after writing its answer). */
static void read_answer(struct conn *c, struct buf *reply) {
    char chunk[65536], progress[96];
    for (;;) {
        ssize_t n = read(c->fd, chunk, sizeof chunk);
        if (n > 0) {
            if (reply->len + (size_t)n > MAX_REPLY)
                cni_fail(ERR_INTERNAL, "the ovnvnet node agent's answer is too large",
                         "more than %d bytes from %s", MAX_REPLY, c->sock);
            buf_add(reply, chunk, (size_t)n);
            continue;
        }
        if (n == 0)
            return;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET || errno == EPIPE) {
            if (reply->len)
                return;
            break;
        }
        if (errno != EAGAIN)
            cni_fail(ERR_TRY_AGAIN_LATER,
                     "try again later: lost the connection to the ovnvnet node agent",
                     "reading from %s: %s", c->sock, strerror(errno));
        snprintf(progress, sizeof progress, " (%zu bytes of answer received)", reply->len);
        struct pollfd pfd = {c->fd, POLLIN, 0};
        poll(&pfd, 1, remaining_ms(c, "waiting for the answer of", progress));
    }
}

static double agent_timeout(const char *config) {
    double t, a = 30, o = 30; /* the agent's defaults for its own two waits */
    int found = json_top_number(config, "agentTimeout", &t);
    if (found < 0 || (found && !(t > 0 && t <= MAX_TIMEOUT_S)))
        cni_fail(ERR_INVALID_CONFIG,
                 "network configuration \"agentTimeout\" must be seconds in (0, 86400]",
                 "it bounds connect, send and receive together");
    if (found)
        return t;
    /* by default never cut the agent short while it waits for both of its own timeouts */
    json_top_number(config, "annotationTimeout", &a);
    json_top_number(config, "ovnInstalledTimeout", &o);
    t = a + o + TIMEOUT_MARGIN_S;
    return t > DEFAULT_TIMEOUT_S && t <= MAX_TIMEOUT_S ? t : DEFAULT_TIMEOUT_S;
}

int main(void) {
    struct buf config = {0}, req = {0}, reply = {0};
    static char version_buf[64], socket_buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];

    signal(SIGPIPE, SIG_IGN);
    size_t env_bytes = cni_env_bytes();
    read_config(&config, env_bytes);
    if (json_top_string(config.data, "cniVersion", version_buf, sizeof version_buf) &&
        version_buf[0])
        cni_version = version_buf;

    struct conn c = {.fd = -1};
    c.sock = getenv("OVNVNET_AGENT_SOCKET");
    if (!c.sock || !*c.sock) {
        if (json_top_string(config.data, "agentSocket", socket_buf, sizeof socket_buf) &&
            socket_buf[0])
            c.sock = socket_buf;
        else
            c.sock = DEFAULT_SOCKET;
    }
    c.timeout = agent_timeout(config.data);
    build_request(&req, &config);

    c.deadline = now_s() + c.timeout;
    connect_agent(&c);
    check_peer(&c);
    int sent_all = send_request(&c, &req);
    read_answer(&c, &reply);
    close(c.fd);

    char *nl = reply.data ? memchr(reply.data, '\n', reply.len) : NULL;
    if (!nl && !sent_all)
        cni_fail(ERR_TRY_AGAIN_LATER,
                 "try again later: the ovnvnet node agent closed the connection while we sent "
                 "the request",
                 "socket %s; request of %zu bytes", c.sock, req.len);
    if (!nl)
        cni_fail(ERR_TRY_AGAIN_LATER,
                 "try again later: the ovnvnet node agent closed the connection without an answer",
                 "socket %s", c.sock);
    char *endp;
    long code = strtol(reply.data, &endp, 10);
    if (endp == reply.data || endp != nl || code < 0 || code > 255)
        cni_fail(ERR_INTERNAL, "malformed answer from the ovnvnet node agent",
                 "socket %s: the first line must be an exit code", c.sock);
    const char *body = nl + 1;
    size_t body_len = reply.len - (size_t)(body - reply.data);
    size_t blank = 0;
    while (blank < body_len && (body[blank] == ' ' || body[blank] == '\t' ||
                                body[blank] == '\r' || body[blank] == '\n'))
        blank++;
    if (code != 0 && blank == body_len)
        cni_fail(ERR_INTERNAL, "the ovnvnet node agent failed without an error object",
                 "socket %s: exit code %ld", c.sock, code);
    write_fd(1, body, body_len);
    return (int)code;
}
