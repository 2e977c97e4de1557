/*
 * kvmboot's TCG plugin for qemu-system-i386 (QEMU 7.2, plugin API 1): it
 * watches the guest's accesses to declared bad RAM and to faulty RAM, and
 * traces the instructions the guest runs, reporting to kvmboot over the
 * socket named by its fd=N argument (protocol.h). kvmboot decides
 * everything: what an access does, whether the run ends there, what a
 * trace shows.
 *
 * Watching costs nothing where nothing is watched. A memory callback on
 * every guest access would cost a call per access whatever its address (a
 * Debian boot to init takes 1.4x as long with an empty one, 2-4x once it
 * asks for the physical address). Instead the plugin protects, with
 * mprotect, the pages of QEMU's own mapping of guest RAM (the shared RAM
 * file, file offset = guest physical address) that hold watched bytes.
 * Only accesses to those pages trap: SIGSEGV on the thread that makes
 * them, before the access. The handler reports the access, lets it happen
 * by unprotecting the page and single-stepping the host instruction (the
 * x86 trap flag), and on the step's SIGTRAP protects the page again and
 * reports what happened. Bad RAM also needs the instruction: a block
 * callback keeps the block that runs, which goes with each report, and
 * kvmboot reads the registers (which QEMU keeps current in its CPU state
 * before every guest memory access) and the block's code to find the
 * instruction in it.
 *
 * All vCPUs run on one QEMU thread (kvmboot asks for thread=single when
 * the machine has several): while one vCPU's access is let through a page,
 * no other vCPU runs to slip through it. They take turns, so the block that
 * runs and its vCPU are the ones whose block callback came last.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "protocol.h"
#include "qemu_plugin_api.h"

KB_EXPORT int qemu_plugin_version = 1;

#define PAGE 4096u
#define TRAP_FLAG 0x100
#define MAX_CONFIG (64u << 20)
/* Each guest page: not watched, or protected read-only (faulty RAM whose
 * reads memory models) or fully (bad RAM, flip). */
enum { UNWATCHED, READ_ONLY, NO_ACCESS };

struct range {
	uint64_t start, end;
	uint32_t class, zero;
};

static int chan = -1; /* the socket to kvmboot */
static uint32_t config_flags;
static uint64_t ram_size;
static uint32_t ram_major, ram_minor;
static uint64_t ram_ino;
static struct range *ranges;
static uint32_t nranges;
static uint8_t *pages; /* UNWATCHED, READ_ONLY or NO_ACCESS per guest page */
static uint8_t *ram;   /* QEMU's mapping of guest RAM, once found */
static pid_t vcpu_tid; /* the thread that runs the vCPUs: the one that reports */
static int tracing;
static uint32_t next_block_id;
static struct sigaction old_segv, old_trap;

/* One vCPU runs at a time, so the block that runs is a plain variable: a
 * thread-local one costs a call in every block callback. It is the
 * block's first instruction's address (linear: i386 addresses fit 32
 * bits) and, above it, its instruction count: all kvmboot needs to read
 * and decode the block, so translation does no more than register the
 * callback. running_cpu is the vCPU that runs it. */
static uint64_t running;
static uint64_t running_serial;
static uint32_t running_cpu;

/* die ends QEMU from anywhere, a signal handler included. The status is
 * even, which kvmboot never takes for the guest's. */
static void die(const char *msg)
{
	if (write(2, msg, strlen(msg)) < 0) {
	}
	_exit(4);
}

/* The plugin's end when kvmboot is gone: QEMU dies with kvmboot anyway. */
static void lost(void)
{
	die("kvmboot plugin: the channel to kvmboot is gone\n");
}

static void write_all(const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = write(chan, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			lost();
		b += w;
		n -= (size_t)w;
	}
}

static void read_all(void *p, size_t n)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t r = read(chan, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			lost();
		b += r;
		n -= (size_t)r;
	}
}

/* send_msg writes a message: header, fixed part, then tail (may be empty). */
static void send_msg(uint32_t type, const void *fixed, uint32_t nfixed, const void *tail, uint32_t ntail)
{
	uint32_t h[2] = {type, nfixed + ntail};
	write_all(h, sizeof h);
	write_all(fixed, nfixed);
	if (ntail > 0)
		write_all(tail, ntail);
}

static uint32_t await_reply(void)
{
	uint32_t r;
	read_all(&r, sizeof r);
	return r;
}

/* encode_block returns tb as BLOCK (free it), its length in *len. */
static uint8_t *encode_block(struct qemu_plugin_tb *tb, uint32_t *len)
{
	uint32_t n = (uint32_t)qemu_plugin_tb_n_insns(tb), code = 0;
	for (uint32_t i = 0; i < n; i++)
		code += (uint32_t)qemu_plugin_insn_size(qemu_plugin_tb_get_insn(tb, i));
	*len = 16 + n + code;
	uint8_t *b = malloc(*len);
	if (b == NULL)
		die("kvmboot plugin: out of memory\n");
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
	memcpy(b, &vaddr, 8);
	memcpy(b + 8, &n, 4);
	memcpy(b + 12, &code, 4);
	uint8_t *lens = b + 16, *at = lens + n;
	for (uint32_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		size_t sz = qemu_plugin_insn_size(insn);
		lens[i] = (uint8_t)sz;
		memcpy(at, qemu_plugin_insn_data(insn), sz);
		at += sz;
	}
	return b;
}

/* classes returns the classes (bit 1<<class) of the watched bytes in
 * [start, end). */
static uint32_t classes(uint64_t start, uint64_t end)
{
	uint32_t lo = 0, hi = nranges, found = 0;
	while (lo < hi) { /* the first range ending after start */
		uint32_t mid = lo + (hi - lo) / 2;
		if (ranges[mid].end <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo; i < nranges && ranges[i].start < end; i++)
		found |= 1u << ranges[i].class;
	return found;
}

static int page_prot(uint64_t page)
{
	return pages[page] == READ_ONLY ? PROT_READ : PROT_NONE;
}

/* A page let through for one host instruction, and what to report once it
 * ran. */
struct step {
	uint64_t page, phys, window;
	uint32_t wlen;
	int done, written;
	uint8_t before[KB_WINDOW];
};

/* The steps of one thread's instruction: one page, or a few when an
 * access straddles them. Threads other than the vCPU's (QEMU's own, none
 * of which kvmboot's machines give guest RAM to) are let through quietly. */
struct stepper {
	pid_t tid;
	int n;
	struct step steps[4];
};
static struct stepper steppers[8];

static struct stepper *stepper_of(pid_t tid, int claim)
{
	for (int i = 0; i < 8; i++)
		if (__atomic_load_n(&steppers[i].tid, __ATOMIC_ACQUIRE) == tid)
			return &steppers[i];
	for (int i = 0; claim && i < 8; i++) {
		pid_t free = 0;
		if (__atomic_compare_exchange_n(&steppers[i].tid, &free, tid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return &steppers[i];
	}
	return NULL;
}

static void pass_on(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_trap;
	if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction != NULL) {
		old->sa_sigaction(sig, si, ctx);
		return;
	}
	if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
		return;
	}
	/* The default action: the faulting instruction faults again on
	 * return; a trap is raised again. */
	signal(sig, SIG_DFL);
	if (sig == SIGTRAP)
		raise(sig);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;
	uint8_t *a = si->si_addr;
	if (ram == NULL || a < ram || a >= ram + ram_size || pages[(uint64_t)(a - ram) / PAGE] == UNWATCHED) {
		pass_on(sig, si, ctx);
		errno = saved;
		return;
	}
	ucontext_t *uc = ctx;
	int write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;
	uint64_t phys = (uint64_t)(a - ram), page = phys / PAGE, page_end = (page + 1) * PAGE;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	struct stepper *s = stepper_of(tid, 1);
	if (s == NULL || s->n == 4)
		die("kvmboot plugin: more threads or pages in one access than it follows\n");
	struct step *st = &s->steps[s->n++];
	memset(st, 0, offsetof(struct step, before));
	st->page = page;
	st->phys = phys;
	/* An access is at most 16 bytes: it may reach watched bytes past
	 * the first one. */
	uint32_t cls = tid == vcpu_tid ? classes(phys, phys + 16 < page_end ? phys + 16 : page_end) : 0;
	if ((cls & (1u << KB_CLASS_BAD)) || (!write && (cls & (1u << KB_CLASS_FLIP)))) {
		/* kvmboot answers once it has done what comes before the
		 * access, or never when the run ends here. */
		struct {
			uint64_t phys;
			uint32_t write, insns;
			uint64_t serial, vaddr;
			uint32_t cpu, zero;
		} m = {phys, (uint32_t)write, (uint32_t)(running >> 32), running_serial, running & 0xffffffff, running_cpu, 0};
		send_msg(KB_MSG_FAULT, &m, sizeof m, NULL, 0);
		await_reply();
		st->done = 1;
	}
	uint8_t *pg = ram + page * PAGE;
	if (mprotect(pg, PAGE, PROT_READ | PROT_WRITE) != 0)
		die("kvmboot plugin: mprotect failed\n");
	if (write && (cls & ((1u << KB_CLASS_FAULTY) | (1u << KB_CLASS_FLIP)))) {
		st->written = 1;
		st->window = phys & ~(uint64_t)63;
		st->wlen = page_end - st->window < KB_WINDOW ? (uint32_t)(page_end - st->window) : KB_WINDOW;
		memcpy(st->before, ram + st->window, st->wlen);
	}
	uc->uc_mcontext.gregs[REG_EFL] |= TRAP_FLAG;
	errno = saved;
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
	int saved = errno;
	struct stepper *s = stepper_of((pid_t)syscall(SYS_gettid), 0);
	if (s == NULL || s->n == 0) {
		pass_on(sig, si, ctx);
		errno = saved;
		return;
	}
	ucontext_t *uc = ctx;
	uc->uc_mcontext.gregs[REG_EFL] &= ~TRAP_FLAG;
	for (int i = 0; i < s->n; i++) {
		struct step *st = &s->steps[i];
		if (st->done) {
			send_msg(KB_MSG_DONE, &st->phys, 8, NULL, 0);
			await_reply();
		}
		if (st->written) {
			struct {
				uint64_t phys, window;
				uint32_t wlen, zero;
			} m = {st->phys, st->window, st->wlen, 0};
			send_msg(KB_MSG_WRITTEN, &m, sizeof m, st->before, st->wlen);
			await_reply();
		}
		if (mprotect(ram + st->page * PAGE, PAGE, page_prot(st->page)) != 0)
			die("kvmboot plugin: mprotect failed\n");
	}
	s->n = 0;
	__atomic_store_n(&s->tid, 0, __ATOMIC_RELEASE);
	errno = saved;
}

/* find_ram returns QEMU's mapping of the RAM file: the one whose device
 * and inode kvmboot named, from file offset 0. */
static uint8_t *find_ram(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (f == NULL)
		return NULL;
	char line[4096];
	uint8_t *found = NULL;
	while (found == NULL && fgets(line, sizeof line, f) != NULL) {
		unsigned long start, end, off, ino;
		unsigned maj, min;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &start, &end, perms, &off, &maj, &min, &ino) == 7 &&
		    ino == ram_ino && maj == ram_major && min == ram_minor && off == 0 && end - start >= ram_size)
			found = (uint8_t *)start;
	}
	fclose(f);
	return found;
}

/* start runs on the vCPU thread before the guest's first block: kvmboot
 * prepares guest RAM (faulty RAM as its models say), then the watched
 * pages are protected. QEMU's loader has written the plan by now. */
static void start(void)
{
	vcpu_tid = (pid_t)syscall(SYS_gettid);
	send_msg(KB_MSG_START, NULL, 0, NULL, 0);
	await_reply();
	if (nranges == 0)
		return;
	if ((ram = find_ram()) == NULL) {
		fprintf(stderr, "kvmboot plugin: QEMU's mapping of the RAM file (inode %lu) not found\n", (unsigned long)ram_ino);
		_exit(4);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_flags = SA_SIGINFO;
	sigfillset(&sa.sa_mask);
	sa.sa_sigaction = on_segv;
	sigaction(SIGSEGV, &sa, &old_segv);
	sa.sa_sigaction = on_trap;
	sigaction(SIGTRAP, &sa, &old_trap);
	/* A blocked SIGSEGV would kill QEMU instead of reaching the handler. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	sigaddset(&set, SIGTRAP);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	uint64_t n = ram_size / PAGE;
	for (uint64_t p = 0; p < n;) {
		uint64_t q = p + 1;
		while (q < n && pages[q] == pages[p])
			q++;
		if (pages[p] != UNWATCHED && mprotect(ram + p * PAGE, (q - p) * PAGE, page_prot(p)) != 0) {
			perror("kvmboot plugin: mprotect");
			_exit(4);
		}
		p = q;
	}
}

static void on_block(unsigned int vcpu, void *block)
{
	running = (uintptr_t)block;
	running_serial++;
	running_cpu = vcpu;
}

/* A trace follows the bootstrap processor, vCPU 0, as on kvmboot's KVM
 * machine. */
static void on_insn(unsigned int vcpu, void *where)
{
	if (!tracing || vcpu != 0)
		return;
	uintptr_t w = (uintptr_t)where;
	uint32_t m[2] = {(uint32_t)(w >> 16), (uint32_t)(w & 0xffff)};
	send_msg(KB_MSG_EXEC, m, sizeof m, NULL, 0);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	(void)id;
	if (vcpu_tid == 0)
		start();
	if (config_flags & KB_CONFIG_BLOCKS) {
		uint64_t block = (uint64_t)qemu_plugin_tb_n_insns(tb) << 32 | (qemu_plugin_tb_vaddr(tb) & 0xffffffff);
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)block);
	}
	if (!tracing)
		return;
	uint32_t blen, bid = next_block_id++;
	uint8_t *b = encode_block(tb, &blen);
	uint32_t m[2] = {bid, blen};
	send_msg(KB_MSG_BLOCK, m, sizeof m, b, blen);
	free(b);
	uint32_t r = await_reply();
	if (r & KB_TRACE_DONE)
		tracing = 0;
	if (r & KB_TRACE_BLOCK) {
		size_t n = qemu_plugin_tb_n_insns(tb);
		for (size_t i = 0; i < n; i++)
			qemu_plugin_register_vcpu_insn_exec_cb(qemu_plugin_tb_get_insn(tb, i), on_insn, QEMU_PLUGIN_CB_NO_REGS,
			                                       (void *)((uintptr_t)bid << 16 | i));
	}
}

/* read_config reads CONFIG; it returns an error message or NULL. */
static const char *read_config(void)
{
	uint32_t h[2];
	read_all(h, sizeof h);
	if (h[0] != KB_MSG_CONFIG || h[1] < 32 || h[1] > MAX_CONFIG)
		return "no configuration from kvmboot";
	uint8_t *c = malloc(h[1]);
	if (c == NULL)
		return "out of memory";
	read_all(c, h[1]);
	uint32_t version;
	memcpy(&version, c, 4);
	memcpy(&config_flags, c + 4, 4);
	memcpy(&ram_size, c + 8, 8);
	memcpy(&ram_major, c + 16, 4);
	memcpy(&ram_minor, c + 20, 4);
	memcpy(&ram_ino, c + 24, 8);
	memcpy(&nranges, c + 32, 4);
	if (version != KB_VERSION)
		return "kvmboot speaks another version of the protocol";
	if (h[1] != 40 + (uint64_t)nranges * sizeof(struct range) || ram_size % PAGE != 0)
		return "malformed configuration";
	ranges = (struct range *)(void *)(c + 40); /* 8-byte aligned: malloc's, plus 40 */
	if ((pages = calloc(ram_size / PAGE + 1, 1)) == NULL)
		return "out of memory";
	for (uint32_t i = 0; i < nranges; i++) {
		struct range *r = &ranges[i];
		if (r->start >= r->end || r->end > ram_size || (i > 0 && r->start < ranges[i - 1].end) || r->class < KB_CLASS_BAD ||
		    r->class > KB_CLASS_FLIP)
			return "malformed range";
		uint8_t want = r->class == KB_CLASS_FAULTY ? READ_ONLY : NO_ACCESS;
		for (uint64_t p = r->start / PAGE; p * PAGE < r->end; p++)
			if (pages[p] < want)
				pages[p] = want;
	}
	return NULL;
}

KB_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (strncmp(argv[i], "fd=", 3) == 0)
			chan = atoi(argv[i] + 3);
	if (chan < 0 || !info->system_emulation) {
		fprintf(stderr, "kvmboot plugin: run by kvmboot only (fd=N, system emulation)\n");
		return 1;
	}
	const char *err = read_config();
	if (err != NULL) {
		fprintf(stderr, "kvmboot plugin: %s\n", err);
		return 1;
	}
	tracing = (config_flags & KB_CONFIG_TRACE) != 0;
	uint32_t hello[2] = {KB_VERSION, 0};
	send_msg(KB_MSG_HELLO, hello, sizeof hello, NULL, 0);
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	return 0;
}
