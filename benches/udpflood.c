/* Paced sender for benches/live.sh: sends `rate` UDP datagrams (or, with `icmp` for the port,
 * ICMP echo requests through a raw socket) per second for `secs` seconds to addr, in bursts
 * every millisecond, and prints what it sent. Unconnected sendto, so ICMP errors from the peer
 * do not stop it.
 *
 *   udpflood ADDR PORT|icmp RATE SECS [PAYLOAD_BYTES]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* The Internet checksum (RFC 1071) of an ICMP message. */
static uint16_t checksum(const unsigned char *p, size_t len) {
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1) sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int main(int argc, char **argv) {
	if (argc < 5) {
		fprintf(stderr, "usage: %s ADDR PORT RATE SECS [PAYLOAD_BYTES [SOURCE_PORT]]\n", argv[0]);
		return 2;
	}
	int icmp = strcmp(argv[2], "icmp") == 0;
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = icmp ? 0 : htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	double rate = atof(argv[3]), secs = atof(argv[4]);
	size_t len = argc > 5 ? (size_t)atoi(argv[5]) : 64;
	char buf[2048];
	if (len > sizeof buf) len = sizeof buf;
	memset(buf, 'x', len);
	if (icmp) {
		/* Echo request, id 0x4242, sequence 1; the payload's first bytes make the header. */
		if (len < 8) len = 8;
		memset(buf, 0, 8);
		buf[0] = 8;
		buf[4] = buf[5] = 0x42;
		buf[7] = 1;
		uint16_t sum = checksum((unsigned char *)buf, len);
		buf[2] = sum >> 8;
		buf[3] = sum & 0xff;
	}
	int fd = icmp ? socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) : socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	/* A source port (53: datagrams that look like DNS answers to the receiver's ruleset). */
	if (!icmp && argc > 6) {
		struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[6]))};
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
			perror("bind");
			return 1;
		}
	}
	unsigned long sent = 0, failed = 0;
	double start = now(), end = start + secs;
	struct timespec tick = {0, 1000000};
	for (;;) {
		double t = now();
		if (t >= end) break;
		/* Catch up to where the schedule says we should be. */
		unsigned long due = (unsigned long)((t - start) * rate);
		/* Bounded bursts: past the sender's own limit the deadline still holds. */
		for (int burst = 0; sent + failed < due && burst < 4096; burst++) {
			if (sendto(fd, buf, len, 0, (struct sockaddr *)&dst, sizeof dst) < 0) {
				failed++;
				if (errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
					perror("sendto");
					return 1;
				}
			} else {
				sent++;
			}
		}
		nanosleep(&tick, NULL);
	}
	double took = now() - start;
	printf("sent %lu failed %lu seconds %.3f rate %.0f\n", sent, failed, took, sent / took);
	return 0;
}
