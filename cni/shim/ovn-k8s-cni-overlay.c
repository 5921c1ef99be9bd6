/*
 * ovn-k8s-cni-overlay: the CNI executable installed on each node.
 *
 * A thin shim (no dependencies beyond libc, so it runs on nodes without Python): it forwards
 * the CNI request -- every CNI_* environment variable plus the network configuration read from
 * stdin -- over a root-only unix socket to the ovnvnet node agent, which does the real work
 * with warm clients. It prints the agent's answer on stdout and exits with its exit code.
 *
 * Wire protocol (one request per connection):
 *   shim  -> agent: {"env": {"CNI_COMMAND": "...", ...}, "config": "<stdin, as a JSON string>"}
 *                   then shutdown(SHUT_WR)
 *   agent -> shim : "<exit code>\n" followed by the bytes to print on stdout, then close.
 *
 * Socket path: env OVNVNET_AGENT_SOCKET (tests), else config key "agentSocket", else
 * /var/run/ovnvnet/cni.sock. The socket must be owned by root (or by our own euid, for tests)
 * and must not be accessible by group or others; otherwise we refuse to talk to it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/var/run/ovnvnet/cni.sock"
#define MAX_CONFIG (4 * 1024 * 1024)
#define REPLY_TIMEOUT_S 600

extern char **environ;

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_grow(struct buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        fputs("{\"code\": 999, \"msg\": \"ovn-k8s-cni-overlay: out of memory\"}\n", stdout);
        exit(1);
    }
    b->data = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *s, size_t n) {
    buf_grow(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Append s as a JSON string literal (quotes included). */
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

/*
 * Find a top-level string member `key` of the JSON object in `json` and copy its (unescaped,
 * simple escapes only) value into out. Returns 1 when found. Nested objects are skipped, so a
 * key inside e.g. prevResult never matches.
 */
static int json_top_string(const char *json, const char *key, char *out, size_t outlen) {
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
                return 0;
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
            if (*q != '"')
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
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        p++;
    }
    return 0;
}

static const char *cni_version = "1.0.0";

/* Print a CNI error result on stdout and exit 1 (the spec's error convention). */
static void cni_fail(int code, const char *msg, const char *fmt, ...) {
    char details[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details, sizeof details, fmt, ap);
    va_end(ap);
    struct buf out = {0};
    buf_adds(&out, "{\"cniVersion\": ");
    buf_add_json_string(&out, cni_version, strlen(cni_version));
    char codes[32];
    snprintf(codes, sizeof codes, ", \"code\": %d, \"msg\": ", code);
    buf_adds(&out, codes);
    buf_add_json_string(&out, msg, strlen(msg));
    buf_adds(&out, ", \"details\": ");
    buf_add_json_string(&out, details, strlen(details));
    buf_adds(&out, "}\n");
    fputs(out.data, stdout);
    fprintf(stderr, "ovn-k8s-cni-overlay: %s: %s\n", msg, details);
    exit(1);
}

static void read_all_stdin(struct buf *b) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cni_fail(5, "cannot read the network configuration from stdin", "%s", strerror(errno));
        }
        if (n == 0)
            break;
        if (b->len + (size_t)n > MAX_CONFIG)
            cni_fail(6, "network configuration too large", "more than %d bytes", MAX_CONFIG);
        buf_add(b, chunk, (size_t)n);
    }
    if (!b->data)
        buf_add(b, "", 0);
}

static void write_all(int fd, const char *data, size_t len, const char *sock) {
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cni_fail(11, "try again later: lost the connection to the ovnvnet node agent",
                     "writing to %s: %s", sock, strerror(errno));
        }
        data += n;
        len -= (size_t)n;
    }
}

int main(void) {
    struct buf config = {0}, req = {0}, reply = {0};
    static char version_buf[64], socket_buf[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];

    read_all_stdin(&config);
    if (json_top_string(config.data, "cniVersion", version_buf, sizeof version_buf) &&
        version_buf[0])
        cni_version = version_buf;

    const char *sock = getenv("OVNVNET_AGENT_SOCKET");
    if (!sock || !*sock) {
        if (json_top_string(config.data, "agentSocket", socket_buf, sizeof socket_buf) &&
            socket_buf[0])
            sock = socket_buf;
        else
            sock = DEFAULT_SOCKET;
    }

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof addr.sun_path)
        cni_fail(7, "agent socket path too long", "%s", sock);
    strcpy(addr.sun_path, sock);

    /* Only talk to a socket that root (or, in tests, we ourselves) own and nobody else can
     * reach: the request carries pod identity and the agent acts on it as root. */
    struct stat st;
    if (lstat(sock, &st) != 0)
        cni_fail(11, "try again later: the ovnvnet node agent is not running",
                 "cannot find its socket %s: %s", sock, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        cni_fail(11, "try again later: the ovnvnet node agent socket is not a socket",
                 "%s", sock);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        cni_fail(100, "refusing an ovnvnet agent socket not owned by root",
                 "%s is owned by uid %u", sock, (unsigned)st.st_uid);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        cni_fail(100, "refusing an ovnvnet agent socket accessible by group or others",
                 "%s has mode %04o; the agent creates it 0600", sock,
                 (unsigned)(st.st_mode & 07777));

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        cni_fail(5, "cannot create a unix socket", "%s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        cni_fail(11, "try again later: cannot connect to the ovnvnet node agent",
                 "connect(%s): %s", sock, strerror(errno));
    struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    buf_adds(&req, "{\"env\": {");
    int first = 1;
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "CNI_", 4) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        if (!first)
            buf_adds(&req, ", ");
        first = 0;
        buf_add_json_string(&req, *e, (size_t)(eq - *e));
        buf_adds(&req, ": ");
        buf_add_json_string(&req, eq + 1, strlen(eq + 1));
    }
    buf_adds(&req, "}, \"config\": ");
    buf_add_json_string(&req, config.data, config.len);
    buf_adds(&req, "}");
    write_all(fd, req.data, req.len, sock);
    shutdown(fd, SHUT_WR);

    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cni_fail(11, "try again later: no answer from the ovnvnet node agent",
                     "reading from %s: %s", sock, strerror(errno));
        }
        if (n == 0)
            break;
        buf_add(&reply, chunk, (size_t)n);
    }
    close(fd);

    char *nl = reply.data ? memchr(reply.data, '\n', reply.len) : NULL;
    if (!nl)
        cni_fail(11, "try again later: the ovnvnet node agent closed the connection without an answer",
                 "socket %s", sock);
    char *endp;
    long code = strtol(reply.data, &endp, 10);
    if (endp != nl || code < 0 || code > 255)
        cni_fail(999, "malformed answer from the ovnvnet node agent", "socket %s", sock);
    size_t body = reply.len - (size_t)(nl + 1 - reply.data);
    if (body && fwrite(nl + 1, 1, body, stdout) != body)
        return 1;
    fflush(stdout);
    return (int)code;
}
