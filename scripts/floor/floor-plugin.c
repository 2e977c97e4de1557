/*
 * floor-plugin.c: a QEMU TCG plugin that times a boot from inside QEMU, the
 * same way whoever loads the machine (kvmboot's firmware, or SeaBIOS and
 * QEMU's -kernel with Linux's own decompressor). It writes one line to
 * the file its out= argument names, at QEMU's exit:
 *
 *   first=MS kernel=MS exit=MS kernel_at=ADDR
 *
 * milliseconds since the plugin was installed (QEMU's start-up, before
 * machine init) to the guest's first block, to the first block that runs
 * at a 16 MiB-aligned address at or above 16 MiB (where Linux's startup_32
 * runs: kvmboot places the kernel there, and Linux's decompressor unpacks
 * it at a multiple of CONFIG_PHYSICAL_ALIGN, 16 MiB for Debian's 686
 * kernel, with KASLR or without), and to QEMU's exit (the guest's
 * debug-exit write). Linux from startup_32 to its init's exit is the same
 * work on both paths: the floor of any loader.
 *
 * Built and loaded by scripts/bench-floor.sh; it uses kvmboot's own
 * declarations of QEMU 7.2's plugin API (machine/qemu/plugin/csrc).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qemu_plugin_api.h"

KB_EXPORT int qemu_plugin_version = 1;

/* qemu_plugin_register_atexit_cb: not among kvmboot's declarations. */
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

#define ALIGN (16u << 20)

static struct timespec installed;
static double first_ms = -1, kernel_ms = -1;
static unsigned long long kernel_at;
static char *out;

static double since_install(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - installed.tv_sec) * 1e3 + (now.tv_nsec - installed.tv_nsec) / 1e6;
}

static void kernel_runs(unsigned int vcpu, void *at)
{
	(void)vcpu;
	if (kernel_ms < 0) {
		kernel_ms = since_install();
		kernel_at = (unsigned long long)(uintptr_t)at;
	}
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	(void)id;
	uint64_t pc = qemu_plugin_tb_vaddr(tb);
	if (first_ms < 0)
		first_ms = since_install(); /* translated just before it runs */
	if (kernel_ms < 0 && pc >= ALIGN && pc % ALIGN == 0 && pc < 0xC0000000u)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, kernel_runs, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)pc);
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
	(void)id;
	(void)p;
	FILE *f = fopen(out, "w");
	if (f == NULL)
		return;
	fprintf(f, "first=%.1f kernel=%.1f exit=%.1f kernel_at=%#llx\n", first_ms, kernel_ms, since_install(), kernel_at);
	fclose(f);
}

KB_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	(void)info;
	clock_gettime(CLOCK_MONOTONIC, &installed);
	for (int i = 0; i < argc; i++)
		if (strncmp(argv[i], "out=", 4) == 0)
			out = strdup(argv[i] + 4);
	if (out == NULL) {
		fprintf(stderr, "floor-plugin: no out=FILE argument\n");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
