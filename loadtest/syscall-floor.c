// The physical floor under a delivery on this machine: what one loopback `writev` of one event frame costs the
// writing thread (loopback runs the receiver's TCP input in the sender's context, and wakes the reader), and what
// one `epoll_wait` wake-up costs (an eventfd written by one thread, the other woken from `epoll_wait`, as NIO wakes
// a loop). Plain C on purpose: the point is the kernel's price with nothing of ours on top.
//
//   cc -O2 -pthread -o /tmp/syscall-floor loadtest/syscall-floor.c && /tmp/syscall-floor
//   /tmp/syscall-floor CONNECTIONS ROUNDS FRAME_BYTES WRITER_CPU READER_CPU
//
// Part 1 writes ROUNDS frames to each of CONNECTIONS loopback TCP connections in turn (what a fan-out does), one
// `writev` per frame, then 4 and 16 frames per `writev`; a reader thread on READER_CPU drains them with
// `epoll_wait` + `read`. It prints the writer's CPU time per `writev` and per frame. Part 2 ping-pongs two
// threads through eventfds and `epoll_wait`, on one CPU (like the hub's two event loops pinned to one core) and
// on two, and prints CPU time and wall time per wake-up. Loopback only, bounded in count; everything is closed on
// exit.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static double now_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) fprintf(stderr, "could not pin to CPU %d\n", cpu);
}

// ---- part 1: loopback writev ----

struct reader_args {
    int epoll;
    int cpu;
    long long expected;
    double cpu_ns;
};

static void *reader(void *raw) {
    struct reader_args *args = raw;
    pin(args->cpu);
    double start = now_ns(CLOCK_THREAD_CPUTIME_ID);
    static char buffer[1 << 16];
    struct epoll_event events[256];
    long long received = 0;
    while (received < args->expected) {
        int ready = epoll_wait(args->epoll, events, 256, 5000);
        if (ready == 0) { fprintf(stderr, "reader: nothing for 5 s (%lld of %lld bytes)\n", received, args->expected); break; }
        for (int i = 0; i < ready; i++) {
            ssize_t n;
            while ((n = read(events[i].data.fd, buffer, sizeof buffer)) > 0) received += n;
        }
    }
    args->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - start;
    return NULL;
}

static void writev_floor(int connections, int rounds, int frame_bytes, int writer_cpu, int reader_cpu) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 4096)) die("listen");
    getsockname(listener, (struct sockaddr *)&address, &length);
    int *server = calloc(connections, sizeof(int)), *client = calloc(connections, sizeof(int));
    int epoll = epoll_create1(0);
    for (int i = 0; i < connections; i++) {
        client[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(client[i], (struct sockaddr *)&address, sizeof address);  // EINPROGRESS; accept completes it
        server[i] = accept(listener, NULL, NULL);
        if (server[i] < 0) die("accept");
        int one = 1;
        setsockopt(server[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as NIO sets it
        struct epoll_event event = {.events = EPOLLIN, .data.fd = client[i]};
        epoll_ctl(epoll, EPOLL_CTL_ADD, client[i], &event);
    }
    pin(writer_cpu);
    char *frames = malloc((size_t)frame_bytes * 16);
    memset(frames, 'x', (size_t)frame_bytes * 16);
    printf("loopback writev: %d connections, %d-byte frames, writer on CPU %d, reader on CPU %d\n", connections,
           frame_bytes, writer_cpu, reader_cpu);
    printf("  frames/writev   writevs   writer CPU µs/writev   µs/frame   reader CPU µs/frame   wall µs/frame\n");
    int batches[] = {1, 4, 16};
    for (int b = 0; b < 3; b++) {
        int per = batches[b];
        int writes = rounds / per;
        struct reader_args args = {.epoll = epoll, .cpu = reader_cpu,
                                   .expected = (long long)writes * per * frame_bytes * connections};
        pthread_t thread;
        pthread_create(&thread, NULL, reader, &args);
        usleep(20000);
        double cpu = now_ns(CLOCK_THREAD_CPUTIME_ID), wall = now_ns(CLOCK_MONOTONIC);
        for (int r = 0; r < writes; r++) {
            for (int i = 0; i < connections; i++) {
                struct iovec vector = {.iov_base = frames, .iov_len = (size_t)frame_bytes * per};
                if (writev(server[i], &vector, 1) < 0) die("writev");
            }
        }
        cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
        pthread_join(thread, NULL);
        wall = now_ns(CLOCK_MONOTONIC) - wall;
        double calls = (double)writes * connections, delivered = calls * per;
        printf("  %13d   %7.0f   %20.2f   %8.2f   %19.2f   %13.2f\n", per, calls, cpu / calls / 1e3,
               cpu / delivered / 1e3, args.cpu_ns / delivered / 1e3, wall / delivered / 1e3);
    }
    for (int i = 0; i < connections; i++) { close(server[i]); close(client[i]); }
    close(listener);
    close(epoll);
    free(server);
    free(client);
    free(frames);
}

// ---- part 2: epoll_wait wake-ups ----

struct side {
    int epoll, mine, other, cpu, rounds, starts;
    double cpu_ns;
};

static void *ping(void *raw) {
    struct side *side = raw;
    pin(side->cpu);
    double start = now_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t one = 1, value;
    struct epoll_event event;
    for (int i = 0; i < side->rounds; i++) {
        if (side->starts && write(side->other, &one, sizeof one) < 0) die("write eventfd");
        if (epoll_wait(side->epoll, &event, 1, 5000) != 1) { fprintf(stderr, "wake-up lost\n"); break; }
        if (read(side->mine, &value, sizeof value) < 0) die("read eventfd");
        if (!side->starts && write(side->other, &one, sizeof one) < 0) die("write eventfd");
    }
    side->cpu_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - start;
    return NULL;
}

static void wakeup_floor(int rounds, int cpu_a, int cpu_b) {
    struct side a = {.cpu = cpu_a, .rounds = rounds, .starts = 1}, b = {.cpu = cpu_b, .rounds = rounds};
    a.mine = eventfd(0, EFD_NONBLOCK);
    b.mine = eventfd(0, EFD_NONBLOCK);
    a.other = b.mine;
    b.other = a.mine;
    a.epoll = epoll_create1(0);
    b.epoll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN};
    event.data.fd = a.mine;
    epoll_ctl(a.epoll, EPOLL_CTL_ADD, a.mine, &event);
    event.data.fd = b.mine;
    epoll_ctl(b.epoll, EPOLL_CTL_ADD, b.mine, &event);
    pthread_t ta, tb;
    double wall = now_ns(CLOCK_MONOTONIC);
    pthread_create(&tb, NULL, ping, &b);
    pthread_create(&ta, NULL, ping, &a);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    wall = now_ns(CLOCK_MONOTONIC) - wall;
    double wakeups = 2.0 * rounds;
    printf("  CPUs %d and %d   %8.0f wake-ups   CPU µs per wake-up (eventfd write + epoll_wait + read) %6.2f   wall µs %6.2f\n",
           cpu_a, cpu_b, wakeups, (a.cpu_ns + b.cpu_ns) / wakeups / 1e3, wall / wakeups / 1e3);
    close(a.mine); close(b.mine); close(a.epoll); close(b.epoll);
}

int main(int argc, char **argv) {
    int connections = argc > 1 ? atoi(argv[1]) : 1000;
    int rounds = argc > 2 ? atoi(argv[2]) : 64;
    int frame_bytes = argc > 3 ? atoi(argv[3]) : 450;
    int writer_cpu = argc > 4 ? atoi(argv[4]) : 0;
    int reader_cpu = argc > 5 ? atoi(argv[5]) : 1;
    if (connections < 1 || connections > 20000 || rounds < 16 || rounds > 100000 || frame_bytes < 1 || frame_bytes > 65536) {
        fprintf(stderr, "usage: %s [connections 1-20000] [rounds 16-100000] [frame bytes] [writer cpu] [reader cpu]\n", argv[0]);
        return 2;
    }
    writev_floor(connections, rounds, frame_bytes, writer_cpu, reader_cpu);
    printf("epoll_wait wake-ups (two threads ping-pong through eventfds):\n");
    wakeup_floor(100000, writer_cpu, writer_cpu);
    wakeup_floor(100000, writer_cpu, reader_cpu);
    return 0;
}
