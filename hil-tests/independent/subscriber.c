/*
 * An independent MQTT subscriber for spindle's bench, on Debian's
 * libmosquitto: subscribes (QoS 1 unless told) to PREFIX/telemetry/+ and PREFIX/health
 * and writes one line per message to stdout, the bench doing the counting:
 *
 *   T <received, us since epoch> <payload "ts", ms> <members of "values">
 *   H <sum of every "overruns" in the health payload>
 *
 *   subscriber PORT PREFIX [QOS]   QOS 1 unless given; prints "ready" once
 *                                  both subscriptions are acknowledged; runs
 *                                  until SIGTERM.
 */
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static const char *prefix;
static int qos = 1;
static int subacks;

static unsigned long long now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
}

/* The number after the first `key` in text, or 0. */
static unsigned long long number_after(const char *text, const char *key) {
    const char *at = strstr(text, key);
    return at ? strtoull(at + strlen(key), NULL, 10) : 0;
}

/* Members of the flat object after `key` (counted by their colons). */
static unsigned members(const char *text, const char *key) {
    const char *at = strstr(text, key);
    if (!at) return 0;
    unsigned n = 0;
    int in_string = 0;
    for (const char *p = at + strlen(key); *p; p++) {
        if (*p == '"' && p[-1] != '\\') in_string = !in_string;
        else if (!in_string && *p == ':') n++;
        else if (!in_string && *p == '}') break;
    }
    return n;
}

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    (void)obj;
    if (rc != 0) {
        fprintf(stderr, "subscriber: connect refused: %d\n", rc);
        exit(1);
    }
    char topic[256];
    snprintf(topic, sizeof topic, "%stelemetry/+", prefix);
    mosquitto_subscribe(m, NULL, topic, qos);
    snprintf(topic, sizeof topic, "%shealth", prefix);
    mosquitto_subscribe(m, NULL, topic, qos);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *qos) {
    (void)m; (void)obj; (void)mid; (void)n; (void)qos;
    if (++subacks == 2) {
        printf("ready\n");
        fflush(stdout);
    }
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m; (void)obj;
    unsigned long long received = now_us();
    static char *text;
    static size_t cap;
    if ((size_t)msg->payloadlen + 1 > cap) {
        cap = (size_t)msg->payloadlen + 1;
        text = realloc(text, cap);
        if (!text) exit(1);
    }
    memcpy(text, msg->payload, (size_t)msg->payloadlen);
    text[msg->payloadlen] = 0;
    size_t len = strlen(msg->topic);
    if (len >= 6 && strcmp(msg->topic + len - 6, "health") == 0) {
        unsigned long long sum = 0;
        for (const char *p = strstr(text, "\"overruns\":"); p; p = strstr(p + 1, "\"overruns\":"))
            sum += strtoull(p + 11, NULL, 10);
        printf("H %llu\n", sum);
        fflush(stdout);
        return;
    }
    printf("T %llu %llu %u\n", received, number_after(text, "\"ts\":"), members(text, "\"values\":{"));
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: subscriber PORT PREFIX [QOS]\n");
        return 2;
    }
    prefix = argv[2];
    if (argc == 4) qos = atoi(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(NULL, true, NULL);
    if (!m) return 1;
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    mosquitto_message_callback_set(m, on_message);
    if (mosquitto_connect(m, "127.0.0.1", atoi(argv[1]), 30) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "subscriber: cannot connect\n");
        return 1;
    }
    int rc = mosquitto_loop_forever(m, -1, 1);
    fprintf(stderr, "subscriber: loop ended: %s\n", mosquitto_strerror(rc));
    return 0;
}
