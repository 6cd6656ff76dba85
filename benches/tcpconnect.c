/* Paced TCP connection opener for benches/owner.sh: starts `rate` new connections per second
 * for `secs` seconds to addr:port (non-blocking connect, in bursts every millisecond), holds
 * each socket `hold_ms` milliseconds, then closes it, and prints what it did. The peer drops
 * the SYNs, so every socket stays in SYN_SENT until closed: one new flow each, no server.
 *
 *   tcpconnect ADDR PORT RATE SECS HOLD_MS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	if (argc < 6) {
		fprintf(stderr, "usage: %s ADDR PORT RATE SECS HOLD_MS\n", argv[0]);
		return 2;
	}
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	double rate = atof(argv[3]), secs = atof(argv[4]), hold = atof(argv[5]) / 1000;
	/* A ring of open sockets, oldest first: rate * hold, plus one burst's worth. */
	size_t cap = (size_t)(rate * hold) + 4096;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < cap + 64) {
		rl.rlim_cur = cap + 64;
		if (rl.rlim_max < rl.rlim_cur) rl.rlim_max = rl.rlim_cur;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			perror("setrlimit (raise the hard limit on open files, ulimit -Hn)");
			return 1;
		}
	}
	int *fds = calloc(cap, sizeof *fds);
	double *opened = calloc(cap, sizeof *opened);
	if (!fds || !opened) return 1;
	size_t head = 0, tail = 0; /* open sockets are [tail, head) mod cap */
	unsigned long started = 0, failed = 0;
	double start = now(), end = start + secs;
	struct timespec tick = {0, 1000000};
	for (;;) {
		double t = now();
		while (head != tail && opened[tail % cap] + hold <= t) {
			close(fds[tail % cap]);
			tail++;
		}
		if (t >= end && head == tail) break;
		if (t >= end) { /* the last sockets still get their full hold */
			nanosleep(&tick, NULL);
			continue;
		}
		unsigned long due = (unsigned long)((t - start) * rate);
		for (int burst = 0; started + failed < due && burst < 4096 && head - tail < cap; burst++) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (fd < 0 || (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
				if (fd >= 0) close(fd);
				failed++;
				continue;
			}
			fds[head % cap] = fd;
			opened[head % cap] = t;
			head++;
			started++;
		}
		nanosleep(&tick, NULL);
	}
	double took = end - start;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	printf("started %lu failed %lu seconds %.3f rate %.0f cpu %.2f\n", started, failed, took, started / took, cpu);
	return 0;
}
