/*
 * An independent Modbus TCP plant for spindle's bench: one libmodbus process
 * serving N endpoints (one listening port each) of P holding registers, as
 * protocol converters do. Written against Debian's libmodbus 3.1; it shares no
 * code with spindle's own simulator.
 *
 *   plant N P      prints "port <p>" for each endpoint, then "ready", and
 *                  serves until SIGTERM. Register r of endpoint e holds
 *                  e * 100 + r (the bench checks values against that).
 */
#include <errno.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ENDPOINTS 64

static volatile sig_atomic_t stop;

static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: plant ENDPOINTS POINTS\n");
        return 2;
    }
    int n = atoi(argv[1]);
    int points = atoi(argv[2]);
    if (n < 1 || n > MAX_ENDPOINTS || points < 1 || points > 125) {
        fprintf(stderr, "plant: 1..%d endpoints of 1..125 points\n", MAX_ENDPOINTS);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);

    modbus_t *ctx[MAX_ENDPOINTS];
    modbus_mapping_t *map[MAX_ENDPOINTS];
    int listener[MAX_ENDPOINTS];
    /* Which endpoint a client socket belongs to; -1 when unused. */
    int owner[FD_SETSIZE];
    for (int fd = 0; fd < FD_SETSIZE; fd++) owner[fd] = -1;
    fd_set all;
    FD_ZERO(&all);
    int fdmax = 0;

    for (int e = 0; e < n; e++) {
        ctx[e] = modbus_new_tcp("127.0.0.1", 0);
        map[e] = modbus_mapping_new(0, 0, points, 0);
        if (ctx[e] == NULL || map[e] == NULL) {
            fprintf(stderr, "plant: %s\n", modbus_strerror(errno));
            return 1;
        }
        for (int r = 0; r < points; r++) map[e]->tab_registers[r] = (uint16_t)(e * 100 + r);
        listener[e] = modbus_tcp_listen(ctx[e], 16);
        if (listener[e] < 0) {
            fprintf(stderr, "plant: listen: %s\n", modbus_strerror(errno));
            return 1;
        }
        struct sockaddr_in addr;
        socklen_t len = sizeof addr;
        getsockname(listener[e], (struct sockaddr *)&addr, &len);
        printf("port %d\n", ntohs(addr.sin_port));
        FD_SET(listener[e], &all);
        if (listener[e] > fdmax) fdmax = listener[e];
    }
    printf("ready\n");
    fflush(stdout);

    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    while (!stop) {
        fd_set ready = all;
        if (select(fdmax + 1, &ready, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            perror("plant: select");
            return 1;
        }
        for (int e = 0; e < n; e++) {
            if (!FD_ISSET(listener[e], &ready)) continue;
            int fd = accept(listener[e], NULL, NULL);
            if (fd < 0 || fd >= FD_SETSIZE) {
                if (fd >= 0) close(fd);
                continue;
            }
            owner[fd] = e;
            FD_SET(fd, &all);
            if (fd > fdmax) fdmax = fd;
        }
        for (int fd = 0; fd <= fdmax; fd++) {
            int e = owner[fd];
            if (e < 0 || !FD_ISSET(fd, &ready)) continue;
            modbus_set_socket(ctx[e], fd);
            int rc = modbus_receive(ctx[e], query);
            if (rc > 0) {
                modbus_reply(ctx[e], query, rc, map[e]);
            } else if (rc == -1) {
                close(fd);
                FD_CLR(fd, &all);
                owner[fd] = -1;
            }
        }
    }
    for (int e = 0; e < n; e++) {
        close(listener[e]);
        modbus_mapping_free(map[e]);
        modbus_free(ctx[e]);
    }
    return 0;
}
