/*
 * floor: what this machine charges for the kernel work a session cannot
 * avoid, measured with nothing of the suite in the way (tests/bench/floor.sh
 * builds and runs it; make bench prints the table; the disk's share is
 * tests/bench/durable.py's). Each figure is the wall time and the CPU time
 * (user and system, of this process and its children) per operation, in
 * microseconds.
 *
 *   floor fork N              fork, the child _exits, waitpid
 *   floor spawn N prog [arg]  vfork, exec prog, waitpid (prog's whole run)
 *   floor cpuid N             one CPUID instruction (x86-64; a hypervisor may
 *                             trap it, and a static glibc runs dozens at start)
 *   floor fault N             first write to a fresh anonymous page
 *   floor cpuids prog [arg]   CPUID instructions prog runs from exec to exit
 *                             (single-stepped under ptrace; prints the count)
 *
 * Output: one line, "name wall_us cpu_us" ("cpuids count instructions").
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct rusage s, c;
	getrusage(RUSAGE_SELF, &s);
	getrusage(RUSAGE_CHILDREN, &c);
	return s.ru_utime.tv_sec + s.ru_stime.tv_sec + c.ru_utime.tv_sec + c.ru_stime.tv_sec +
	       (s.ru_utime.tv_usec + s.ru_stime.tv_usec + c.ru_utime.tv_usec + c.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(111);
}

/* In a child: fds 0, 1 and 2 on /dev/null, then optionally traced, then
 * prog (exit 127 when it cannot be run). */
static void run_quietly(char **prog, int traced)
{
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	if (traced)
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	execv(prog[0], prog);
	_exit(127);
}

/* vfork and exec prog, its output to /dev/null; its pid. Out of line, so
 * that the child, which shares this stack until its exec, clobbers nothing
 * of the caller's loop. */
static __attribute__((noinline)) pid_t spawn(char **prog)
{
	pid_t p = vfork();
	if (p < 0)
		die("vfork");
	if (p == 0)
		run_quietly(prog, 0);
	return p;
}

/* Single-step prog and count the CPUID instructions (0F A2) it runs. */
static int count_cpuid(char **prog)
{
	pid_t p = fork();
	if (p < 0)
		die("fork");
	if (p == 0)
		run_quietly(prog, 1);
	long steps = 0, found = 0;
	int st;
	waitpid(p, &st, 0);
	while (WIFSTOPPED(st) && steps < 50000000) {
		struct user_regs_struct r;
		if (ptrace(PTRACE_GETREGS, p, NULL, &r) == 0) {
			long word = ptrace(PTRACE_PEEKTEXT, p, (void *)r.rip, NULL);
			if ((word & 0xffff) == 0xa20f)
				found++;
		}
		steps++;
		if (ptrace(PTRACE_SINGLESTEP, p, NULL, NULL) != 0)
			break;
		waitpid(p, &st, 0);
	}
	printf("cpuids %ld %ld\n", found, steps);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: floor fork|spawn|cpuid|fault N ..., floor cpuids prog ...\n");
		return 100;
	}
	const char *what = argv[1];
	if (!strcmp(what, "cpuids"))
		return count_cpuid(argv + 2);
	long n = atol(argv[2]);
	if (n < 1)
		n = 1;
	double t0 = now(), c0 = cpu();
	if (!strcmp(what, "fork")) {
		for (long i = 0; i < n; i++) {
			pid_t p = fork();
			if (p < 0)
				die("fork");
			if (p == 0)
				_exit(0);
			waitpid(p, NULL, 0);
		}
	} else if (!strcmp(what, "spawn") && argc > 3) {
		for (long i = 0; i < n; i++)
			waitpid(spawn(argv + 3), NULL, 0);
	} else if (!strcmp(what, "cpuid")) {
#if defined(__x86_64__)
		unsigned a, b, c, d, sum = 0;
		for (long i = 0; i < n; i++) {
			__cpuid_count(7, 0, a, b, c, d);
			sum += a + b + c + d;
		}
		if (sum == 1)
			puts("");
#else
		fprintf(stderr, "floor: cpuid is x86-64 only\n");
		return 100;
#endif
	} else if (!strcmp(what, "fault")) {
		volatile char *m = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			die("mmap");
		t0 = now(), c0 = cpu();
		for (long i = 0; i < n; i++)
			m[i * 4096] = 1;
	} else {
		fprintf(stderr, "floor: unknown measure %s\n", what);
		return 100;
	}
	double t = now() - t0, c = cpu() - c0;
	printf("%s %.1f %.1f\n", what, t * 1e6 / n, c * 1e6 / n);
	return 0;
}
