/*
 * kernel.c: the kvmboot test kernel.
 *
 * A freestanding i386 Multiboot kernel that checks what its boot loader did
 * and prints a machine-readable report on COM1. It is linked at 0x1000000
 * but a loader may load it anywhere and relocate it with the relocations
 * `ld --emit-relocs` kept in the ELF file. What a loader must guarantee, and
 * what this file checks:
 *
 *   - entry in flat 32-bit protected mode, paging off, EFLAGS.IF clear,
 *     EAX = 0x2BADB002, EBX = a Multiboot info structure;
 *   - every R_386_32 relocation adjusted by delta = load address - link
 *     address, except those against absolute (SHN_ABS) symbols, which keep
 *     their value, and PC-relative ones, which need nothing;
 *   - .bss zeroed;
 *   - boot information (info, cmdline, modules) outside the kernel image,
 *     modules page aligned (we ask for it), and the image in RAM that the
 *     memory map calls available (type 1), away from bad RAM (type 5).
 *
 * The report (one "kt: " line each; boot/testkernel/report.go parses it):
 *
 *   kt: hello kvmboot-testkernel 1
 *   kt: magic=0x2badb002 info=0x00009000 flags=0x0000024f
 *   kt: base=0x02000000 link=0x01000000 delta=0x01000000 size=0x00006000
 *   kt: cmdline=<verbatim; control characters shown as '?'>
 *   kt: bootloader=<name>
 *   kt: mem lower=639 upper=261120            (or "kt: mem none")
 *   kt: mmap base=0x... len=0x... type=1      (one per entry, 64-bit hex)
 *   kt: module index=0 start=0x... end=0x... string=<string>
 *   kt: relocs checked=N ok=N
 *   kt: abs checked=N ok=N
 *   kt: bss zero=yes|no
 *   kt: smp cpus=N bsp=ID trampoline=0x...    (kt.smp: see check_smp)
 *   kt: ap apic=ID                            (kt.smp: one per processor started)
 *   kt: smp arrived=M of=N-1
 *   kt: fail <check>: <detail>                (printed where it is found)
 *   kt: result pass|fail failures=N
 *
 * followed by the output of the kt.* actions on the command line (see
 * run_actions), then the exit status written to the debug-exit port 0xf4.
 * A "fail" line comes right after the line it is about, or before the
 * summary line of its group (relocs, abs). If the loader did not relocate
 * the image at all, no C code can run: entry.S prints hello, one fail line
 * and the result, and stops.
 *
 * No paging, no interrupts, no libgcc: 64-bit values are only added,
 * compared and printed in hex. One processor runs until kt.smp starts the
 * others (ap.S).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define KT_VERSION		"1"
#define MB_BOOT_MAGIC		0x2BADB002u
#define KT_LINK_BASE		0x01000000u	/* as in linker.ld */
#define KT_ABS_MAGIC		0xC0FFEE00u	/* as in linker.ld */
#define KT_ABS_MMIO		0xFEC00000u	/* as in linker.ld */
#define MAX_STRING		4096		/* longest cmdline or name we print */

/* Built by entry.S on the stack, first field at the lowest address. */
struct entry_state {
	uint32_t magic;		/* EAX at entry */
	uint32_t info;		/* EBX at entry */
	uint32_t base;		/* runtime address of the image (PC-relative) */
	uint32_t size;		/* _end - kt_image_start */
	uint32_t bss_nonzero;	/* first non-zero .bss dword, 0 if none */
	uint32_t eflags;	/* EFLAGS at entry */
	uint32_t link_base;	/* `movl $kt_link_base`: absolute, not relocated */
	uint32_t stack_top;	/* kt_stack_top (entry.S checked that the
				   relocated and PC-relative addresses agree) */
};

void kmain(const struct entry_state *st);

/* ---- Hardware access ------------------------------------------------ */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t read_cr0(void)
{
	uint32_t v;
	__asm__ volatile("movl %%cr0, %0" : "=r"(v));
	return v;
}

static __attribute__((noreturn)) void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

/*
 * Hide a value from the optimizer, so that the code really uses what the
 * loader put in memory instead of a constant the compiler folded in.
 */
static inline uint32_t opaque(uint32_t v)
{
	__asm__("" : "+r"(v));
	return v;
}

/* ---- Serial port: polled 16550 at COM1 --------------------------------- */

#define COM1		0x3F8
#define UART_THR	0	/* transmit holding (DLAB=0) */
#define UART_DLL	0	/* divisor low (DLAB=1) */
#define UART_IER	1	/* interrupt enable (DLAB=0) */
#define UART_DLM	1	/* divisor high (DLAB=1) */
#define UART_FCR	2	/* FIFO control */
#define UART_LCR	3	/* line control */
#define UART_MCR	4	/* modem control */
#define UART_LSR	5	/* line status */
#define UART_LSR_THRE	0x20	/* transmit holding register empty */

static void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);	/* no interrupts */
	outb(COM1 + UART_LCR, 0x80);	/* DLAB on */
	outb(COM1 + UART_DLL, 0x01);	/* divisor 1: 115200 baud */
	outb(COM1 + UART_DLM, 0x00);
	outb(COM1 + UART_LCR, 0x03);	/* DLAB off, 8N1 */
	outb(COM1 + UART_FCR, 0xC7);	/* FIFO on, cleared, 14-byte trigger */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS; OUT2 off: no IRQ */
}

static void serial_putc(char c)
{
	if (c == '\n')
		serial_putc('\r');
	/* Bounded, so that a UART that never says "empty" slows us down
	 * instead of hanging us. */
	for (uint32_t i = 0; i < 100000; i++)
		if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
			break;
	outb(COM1 + UART_THR, (uint8_t)c);
}

/* ---- Printing ------------------------------------------------------------ */

static void put_str(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

/* A string from the boot loader: at most max bytes, control bytes as '?'. */
static void put_untrusted(const char *s, uint32_t max)
{
	for (uint32_t i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		serial_putc(c < 0x20 || c == 0x7f ? '?' : (char)c);
	}
}

static void put_hex_digits(uint32_t v)
{
	for (int shift = 28; shift >= 0; shift -= 4)
		serial_putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

static void put_dec(uint32_t v)
{
	char buf[10];
	int n = 0;
	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		serial_putc(buf[--n]);
}

/*
 * A small printf:
 *   %s  string            %S  string from the boot loader (see put_untrusted)
 *   %u  uint32_t decimal  %x  uint32_t as 0x + 8 hex digits
 *   %X  uint64_t as 0x + 16 hex digits
 */
static void vprint(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			serial_putc(*fmt);
			continue;
		}
		switch (*++fmt) {
		case 's':
			put_str(va_arg(ap, const char *));
			break;
		case 'S':
			put_untrusted(va_arg(ap, const char *), MAX_STRING);
			break;
		case 'u':
			put_dec(va_arg(ap, uint32_t));
			break;
		case 'x':
			put_str("0x");
			put_hex_digits(va_arg(ap, uint32_t));
			break;
		case 'X': {
			uint64_t v = va_arg(ap, uint64_t);
			put_str("0x");
			put_hex_digits((uint32_t)(v >> 32));
			put_hex_digits((uint32_t)v);
			break;
		}
		case '\0':
			return;
		default:
			serial_putc(*fmt);
			break;
		}
	}
}

static void print(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
}

/* ---- Failures -------------------------------------------------------- */

static uint32_t failures;

/* Prints "kt: fail <check>: <detail>" and counts it. */
static void fail(const char *check, const char *fmt, ...)
{
	va_list ap;
	failures++;
	print("kt: fail %s: ", check);
	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
	serial_putc('\n');
}

/* The loaded image, [img_base, img_base + img_size). */
static uint32_t img_base, img_size;

/* Does [start, start+len) overlap the image? */
static int overlaps_image(uint32_t start, uint32_t len)
{
	uint64_t s = start, e = (uint64_t)start + len;
	return len && s < (uint64_t)img_base + img_size && img_base < e;
}

static void check_outside_image(const char *what, uint32_t start, uint32_t len)
{
	if (overlaps_image(start, len))
		fail("overlap", "%s [%x, %x) overlaps the kernel image [%x, %x)",
		     what, start, start + len, img_base, img_base + img_size);
}

/* ---- Relocation self-check ----------------------------------------- */

/* Canaries: distinct values the relocated pointers must find. */
uint32_t kt_canary_data = 0x6b740d01;
uint32_t kt_canary_array[4] = { 0x6b740d10, 0x6b740d11, 0x6b740d12, 0x6b740d13 };
const uint32_t kt_canary_rodata = 0x6b740a01;
uint32_t kt_canary_bss;			/* .bss: must read 0 */
extern uint32_t kt_asm_canary;		/* entry.S, .data: 0x6b74a5a5 */
uint32_t kt_asm_canary_addr(void);	/* entry.S: returns $kt_asm_canary */
extern char kt_stack[];			/* entry.S: the stack, KT_STACK_SIZE bytes */
#define KT_STACK_SIZE 16384

/* Functions that return an id: a relocated pointer to one must call it. */
__attribute__((noinline)) uint32_t kt_fn_one(void)   { return 0x6b74f001; }
__attribute__((noinline)) uint32_t kt_fn_two(void)   { return 0x6b74f002; }
__attribute__((noinline)) uint32_t kt_fn_three(void) { return 0x6b74f003; }

struct reloc_check {
	char name[16];			/* inline: printing it needs no relocation */
	const uint32_t *object;		/* a canary, or NULL */
	uint32_t (*function)(void);	/* a function, or NULL */
	uint32_t want;			/* the canary's value or the function's id */
};

/* Pointers in .data (relocations in .rel.data). */
struct reloc_check kt_data_checks[] = {
	{ "data->data",    &kt_canary_data,     NULL,        0x6b740d01 },
	{ "data->data+8",  &kt_canary_array[2], NULL,        0x6b740d12 },
	{ "data->rodata",  &kt_canary_rodata,   NULL,        0x6b740a01 },
	{ "data->bss",     &kt_canary_bss,      NULL,        0 },
	{ "data->asm",     &kt_asm_canary,      NULL,        0x6b74a5a5 },
	{ "data->text",    NULL,                kt_fn_one,   0x6b74f001 },
	{ "data->text2",   NULL,                kt_fn_two,   0x6b74f002 },
};

/* Pointers in .rodata (relocations in .rel.rodata). */
const struct reloc_check kt_rodata_checks[] = {
	{ "rodata->data",  &kt_canary_array[3], NULL,        0x6b740d13 },
	{ "rodata->text",  NULL,                kt_fn_three, 0x6b74f003 },
};

static uint32_t relocs_checked, relocs_ok;

/*
 * One relocated pointer: it must point into the loaded image, and what it
 * points at must be what the linker put there. A function is called only
 * once its pointer is known to be inside the image.
 */
static void check_pointer(const char *name, uint32_t ptr, int is_function, uint32_t want)
{
	relocs_checked++;
	if (ptr - img_base >= img_size) {	/* unsigned: also catches ptr < base */
		fail("reloc", "%s: pointer %x is outside the image [%x, %x)",
		     name, ptr, img_base, img_base + img_size);
		return;
	}
	uint32_t got = is_function ? ((uint32_t (*)(void))ptr)()
				   : *(const volatile uint32_t *)ptr;
	if (got != want) {
		fail("reloc", "%s: %s at %x gave %x, want %x", name,
		     is_function ? "function" : "object", ptr, got, want);
		return;
	}
	relocs_ok++;
}

static void check_table(const struct reloc_check *table, uint32_t n)
{
	/* Read the table through an opaque pointer: the compiler must not
	 * replace the loads with the constants it knows were stored there. */
	table = (const struct reloc_check *)opaque((uint32_t)table);
	for (uint32_t i = 0; i < n; i++) {
		const volatile struct reloc_check *c = &table[i];
		if (c->function)
			check_pointer(table[i].name, (uint32_t)c->function, 1, c->want);
		else
			check_pointer(table[i].name, (uint32_t)c->object, 0, c->want);
	}
}

static void check_relocations(const struct entry_state *st)
{
	check_table(kt_data_checks, sizeof kt_data_checks / sizeof kt_data_checks[0]);
	check_table(kt_rodata_checks, sizeof kt_rodata_checks / sizeof kt_rodata_checks[0]);

	/* Addresses taken in .text: `movl $symbol` from C and from entry.S. */
	check_pointer("text->data", opaque((uint32_t)&kt_canary_data), 0, 0x6b740d01);
	check_pointer("text->rodata", opaque((uint32_t)&kt_canary_rodata), 0, 0x6b740a01);
	check_pointer("text->text", opaque((uint32_t)&kt_fn_two), 1, 0x6b74f002);
	check_pointer("asm->data", kt_asm_canary_addr(), 0, 0x6b74a5a5);

	/* The stack we run on: C's idea of its address must agree. */
	relocs_checked++;
	if (opaque((uint32_t)kt_stack) + KT_STACK_SIZE != st->stack_top)
		fail("reloc", "text->stack: kt_stack is %x, but the stack top is at %x",
		     opaque((uint32_t)kt_stack), st->stack_top);
	else
		relocs_ok++;

	print("kt: relocs checked=%u ok=%u\n", relocs_checked, relocs_ok);
}

/* ---- Absolute symbols: their relocations must NOT be applied ---------- */

extern char kt_link_base[], kt_abs_magic[], kt_abs_mmio[];	/* linker.ld */

/* Absolute values stored in .data and .rodata (relocations against ABS). */
uint32_t kt_abs_in_data[2] = { (uint32_t)kt_abs_magic, (uint32_t)kt_link_base };
const uint32_t kt_abs_in_rodata = (uint32_t)kt_abs_mmio;

static uint32_t abs_checked, abs_ok;

static void check_abs(const char *name, uint32_t got, uint32_t want)
{
	abs_checked++;
	if (got != want) {
		fail("abs", "%s is %x, want %x (relocated like an address in the image?)",
		     name, got, want);
		return;
	}
	abs_ok++;
}

static uint32_t load_u32(const uint32_t *p)
{
	return *(const volatile uint32_t *)opaque((uint32_t)p);
}

static void check_absolute_symbols(const struct entry_state *st)
{
	check_abs("text:kt_abs_magic", opaque((uint32_t)kt_abs_magic), KT_ABS_MAGIC);
	check_abs("text:kt_abs_mmio", opaque((uint32_t)kt_abs_mmio), KT_ABS_MMIO);
	check_abs("asm:kt_link_base", st->link_base, KT_LINK_BASE);
	check_abs("data:kt_abs_magic", load_u32(&kt_abs_in_data[0]), KT_ABS_MAGIC);
	check_abs("data:kt_link_base", load_u32(&kt_abs_in_data[1]), KT_LINK_BASE);
	check_abs("rodata:kt_abs_mmio", load_u32(&kt_abs_in_rodata), KT_ABS_MMIO);
	print("kt: abs checked=%u ok=%u\n", abs_checked, abs_ok);
}

/* ---- Multiboot information ------------------------------------------- */

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;		/* flags bit 0 */
	uint32_t boot_device;			/* bit 1 */
	uint32_t cmdline;			/* bit 2 */
	uint32_t mods_count, mods_addr;		/* bit 3 */
	uint32_t syms[4];			/* bit 4 or 5 */
	uint32_t mmap_length, mmap_addr;	/* bit 6 */
	uint32_t drives_length, drives_addr;	/* bit 7 */
	uint32_t config_table;			/* bit 8 */
	uint32_t boot_loader_name;		/* bit 9 */
	uint32_t apm_table;			/* bit 10 */
};

#define MBI_MEM		(1u << 0)
#define MBI_CMDLINE	(1u << 2)
#define MBI_MODS	(1u << 3)
#define MBI_AOUT_SYMS	(1u << 4)
#define MBI_ELF_SHDR	(1u << 5)
#define MBI_MMAP	(1u << 6)
#define MBI_LOADER_NAME	(1u << 9)

struct mb_module {
	uint32_t start, end, string, reserved;
};

struct __attribute__((packed)) mb_mmap_entry {
	uint32_t size;		/* of the rest of the entry: 20 or more */
	uint64_t base, len;
	uint32_t type;		/* 1 available, 3 ACPI, 4 NVS, 5 bad RAM, other reserved */
};

#define MAX_MMAP_ENTRIES 256

/* Iterates the memory map: returns the next entry, or NULL at its end. */
static const struct mb_mmap_entry *mmap_next(const struct mb_info *mbi,
					     const struct mb_mmap_entry *e, uint32_t *count)
{
	uint64_t end = (uint64_t)mbi->mmap_addr + mbi->mmap_length;
	uint64_t next = e ? (uint64_t)(uint32_t)e + e->size + 4 : mbi->mmap_addr;
	if (next + sizeof(struct mb_mmap_entry) > end || ++*count > MAX_MMAP_ENTRIES)
		return NULL;
	return (const struct mb_mmap_entry *)(uint32_t)next;
}

static void print_mmap(const struct mb_info *mbi)
{
	uint32_t n = 0;
	for (const struct mb_mmap_entry *e = mmap_next(mbi, NULL, &n); e; e = mmap_next(mbi, e, &n)) {
		print("kt: mmap base=%X len=%X type=%u\n", e->base, e->len, e->type);
		if (e->size < 20) {
			fail("mmap", "entry at %x has size %u, want at least 20", (uint32_t)e, e->size);
			return;
		}
	}
	if (n > MAX_MMAP_ENTRIES)
		fail("mmap", "more than %u entries", MAX_MMAP_ENTRIES);
}

/*
 * The range [start, start+len) must lie in memory the map calls available
 * (type 1) and overlap nothing else: no bad RAM (type 5), no reserved area.
 */
static void check_in_ram(const struct mb_info *mbi, const char *what, uint32_t start, uint32_t len)
{
	uint64_t s = start, e = (uint64_t)start + len;
	const struct mb_mmap_entry *m;
	uint32_t n;

	if (!(mbi->flags & MBI_MMAP) || len == 0)
		return;
	n = 0;
	for (m = mmap_next(mbi, NULL, &n); m && m->size >= 20; m = mmap_next(mbi, m, &n)) {
		if (m->type != 1 && m->len && m->base < e && s < m->base + m->len) {
			fail("placement", "%s [%x, %x) overlaps memory map type %u [%X, %X)",
			     what, start, start + len, m->type, m->base, m->base + m->len);
			return;
		}
	}
	/* Walk forward through available entries until the range is covered. */
	for (uint64_t cur = s; cur < e;) {
		uint64_t next = cur;
		n = 0;
		for (m = mmap_next(mbi, NULL, &n); m && m->size >= 20; m = mmap_next(mbi, m, &n))
			if (m->type == 1 && m->base <= cur && cur < m->base + m->len)
				next = m->base + m->len;
		if (next == cur) {
			fail("placement", "%s [%x, %x): %X is not in available memory",
			     what, start, start + len, cur);
			return;
		}
		cur = next;
	}
}

static uint32_t string_size(const char *s)
{
	uint32_t n = 0;
	while (n < MAX_STRING && s[n])
		n++;
	return n + 1;
}

static void check_modules(const struct mb_info *mbi)
{
	const struct mb_module *mods = (const struct mb_module *)mbi->mods_addr;

	check_outside_image("module list", mbi->mods_addr, mbi->mods_count * sizeof *mods);
	for (uint32_t i = 0; i < mbi->mods_count && i < 64; i++) {
		const struct mb_module *m = &mods[i];
		const char *str = m->string ? (const char *)m->string : "";
		print("kt: module index=%u start=%x end=%x string=%S\n", i, m->start, m->end, str);
		if (m->start >= m->end)
			fail("module", "module %u: start %x is not below end %x", i, m->start, m->end);
		if (m->start & 0xfff)
			fail("module", "module %u: start %x is not page aligned (header flag 0 asks for it)",
			     i, m->start);
		if (m->start < m->end) {
			check_outside_image("module", m->start, m->end - m->start);
			check_in_ram(mbi, "module", m->start, m->end - m->start);
		}
		if (m->string)
			check_outside_image("module string", m->string, string_size(str));
	}
	if (mbi->mods_count > 64)
		fail("module", "%u modules, only the first 64 checked", mbi->mods_count);
}

/* Prints the Multiboot part of the report; returns the cmdline (or ""). */
static const char *report_multiboot(const struct entry_state *st)
{
	const struct mb_info *mbi = (const struct mb_info *)st->info;
	int valid = st->magic == MB_BOOT_MAGIC && st->info != 0;
	uint32_t flags = valid ? mbi->flags : 0;
	const char *cmdline = "", *loader = "";

	print("kt: magic=%x info=%x flags=%x\n", st->magic, st->info, flags);
	print("kt: base=%x link=%x delta=%x size=%x\n",
	      st->base, st->link_base, st->base - st->link_base, st->size);
	if (st->magic != MB_BOOT_MAGIC)
		fail("magic", "EAX was %x, want 0x2badb002: ignoring the info at %x", st->magic, st->info);
	else if (st->info == 0)
		fail("info", "EBX was 0: no Multiboot information");
	else
		check_outside_image("multiboot info", st->info, sizeof *mbi);

	if ((flags & MBI_CMDLINE) && mbi->cmdline) {
		cmdline = (const char *)mbi->cmdline;
		check_outside_image("cmdline", mbi->cmdline, string_size(cmdline));
	}
	if ((flags & MBI_LOADER_NAME) && mbi->boot_loader_name) {
		loader = (const char *)mbi->boot_loader_name;
		check_outside_image("boot loader name", mbi->boot_loader_name, string_size(loader));
	}
	print("kt: cmdline=%S\n", cmdline);
	print("kt: bootloader=%S\n", loader);

	if (flags & MBI_MEM)
		print("kt: mem lower=%u upper=%u\n", mbi->mem_lower, mbi->mem_upper);
	else
		print("kt: mem none\n");
	if (valid && !(flags & MBI_MEM))
		fail("mem", "no mem_lower/mem_upper, but header flag 1 asks for them");
	if ((flags & (MBI_AOUT_SYMS | MBI_ELF_SHDR)) == (MBI_AOUT_SYMS | MBI_ELF_SHDR))
		fail("flags", "bits 4 and 5 are both set in %x", flags);

	if (flags & MBI_MMAP) {
		check_outside_image("memory map", mbi->mmap_addr, mbi->mmap_length);
		print_mmap(mbi);
		check_in_ram(mbi, "kernel image", img_base, img_size);
	}
	if (flags & MBI_MODS)
		check_modules(mbi);
	return cmdline;
}

/* ---- The real-mode part --------------------------------------------------- */

#include "realmode.h"

/*
 * A loader that runs our real-mode part (kvmboot, from the REALMODE
 * descriptor of its ELF note) stores the part's physical address here. It
 * lives in .data, not .bss, so that the loader's write is part of the file
 * bytes it places; any other loader leaves it 0.
 */
__attribute__((section(".data"))) volatile uint32_t kt_realmode_addr = 0;

struct __attribute__((packed)) rm_entry {
	uint64_t base, len;
	uint32_t type;
};

struct __attribute__((packed)) rm_results {
	uint32_t magic;
	uint16_t count, status;
	struct rm_entry e[RM_MAX];
};

/* Prints what the real-mode part got from int 15h E820 and checks it
 * against the Multiboot memory map: both come from the same loader. */
static void check_realmode(const struct entry_state *st)
{
	const struct mb_info *mbi = (const struct mb_info *)st->info;
	uint32_t at = kt_realmode_addr;
	const struct rm_results *r;
	const struct mb_mmap_entry *m;
	uint32_t i, n = 0;

	if (at == 0) {
		print("kt: realmode none\n");
		return;
	}
	r = (const struct rm_results *)(at + RM_RESULTS);
	print("kt: realmode at=%x status=%u entries=%u\n", at, r->magic == RM_MAGIC ? r->status : 0xFFFFu, r->count);
	if (at + RM_SIZE > 0x100000 || r->magic != RM_MAGIC || r->status != 0 || r->count > RM_MAX) {
		fail("realmode", "no valid results at %x (magic %x, status %u)", at, r->magic, r->status);
		return;
	}
	for (i = 0; i < r->count; i++)
		print("kt: e820 base=%X len=%X type=%u\n", r->e[i].base, r->e[i].len, r->e[i].type);
	if (st->magic != MB_BOOT_MAGIC || !(mbi->flags & MBI_MMAP)) {
		fail("realmode", "no Multiboot memory map to compare with");
		return;
	}
	for (m = mmap_next(mbi, NULL, &n), i = 0; m && i < r->count; m = mmap_next(mbi, m, &n), i++) {
		if (m->base != r->e[i].base || m->len != r->e[i].len || m->type != r->e[i].type) {
			fail("realmode", "E820 entry %u differs from Multiboot's", i);
			return;
		}
	}
	if (m || i != r->count) {
		fail("realmode", "E820 has %u entries, Multiboot a different number", r->count);
		return;
	}
	print("kt: realmode match=yes\n");
}

/* ---- CPU state at entry ------------------------------------------------- */

static void check_cpu(const struct entry_state *st)
{
	uint32_t cr0 = read_cr0();
	if (st->eflags & (1u << 9))
		fail("cpu", "EFLAGS.IF was set at entry (eflags=%x)", st->eflags);
	if (cr0 & (1u << 31))
		fail("cpu", "paging is on (cr0=%x)", cr0);
	if (!(cr0 & 1u))
		fail("cpu", "protected mode is off (cr0=%x)", cr0);
}

/* ---- Actions from the command line ------------------------------------ */

enum action_kind {
	ACT_EXIT, ACT_POKE, ACT_PEEK, ACT_FLOOD, ACT_PORTS, ACT_COM2,
	ACT_PANIC, ACT_HANG, ACT_SPIN, ACT_TRIPLE, ACT_RESET,
	/* Not run in order: they shape kt.smp, before the result line. */
	ACT_SMP, ACT_AP_SPIN, ACT_AP_TRIPLE, ACT_AP_POKE,
};

struct action {
	enum action_kind kind;
	uint64_t arg;
};

#define MAX_ACTIONS 32
static struct action actions[MAX_ACTIONS];
static uint32_t n_actions;

/* Does the word [w, w+len) start with prefix? */
static int has_prefix(const char *w, uint32_t len, const char *prefix)
{
	uint32_t i;
	for (i = 0; prefix[i]; i++)
		if (i >= len || w[i] != prefix[i])
			return 0;
	return 1;
}

static int is_word(const char *w, uint32_t len, const char *word)
{
	return has_prefix(w, len, word) && string_size(word) - 1 == len;
}

/* Parses decimal or 0x-hex digits [s, s+len) into *v, at most max. */
static int parse_number(const char *s, uint32_t len, int hex, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;
	uint32_t i = 0;

	if (hex) {
		if (len < 3 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
			return 0;
		i = 2;
	} else if (len == 0) {
		return 0;
	}
	for (; i < len; i++) {
		char c = s[i];
		uint32_t d;
		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (hex && c >= 'a' && c <= 'f')
			d = (uint32_t)(c - 'a' + 10);
		else if (hex && c >= 'A' && c <= 'F')
			d = (uint32_t)(c - 'A' + 10);
		else
			return 0;
		if (x > max)	/* stop before the shift could overflow */
			return 0;
		x = hex ? (x << 4) | d : x * 10 + d;
	}
	if (x > max)
		return 0;
	*v = x;
	return 1;
}

static void bad_word(const char *w, uint32_t len, const char *why)
{
	failures++;
	put_str("kt: fail cmdline: ");
	put_untrusted(w, len < 64 ? len : 64);
	print(": %s\n", why);
}

/* Parses one kt.* word into actions[]; reports a failure if it is bad. */
static void parse_word(const char *w, uint32_t len)
{
	static const struct { const char *name; enum action_kind kind; int hex; uint64_t max; } table[] = {
		{ "kt.exit=",  ACT_EXIT,   0, 255 },
		{ "kt.poke=",  ACT_POKE,   1, 0xFFFFFFFCu },
		{ "kt.peek=",  ACT_PEEK,   1, 0xFFFFFFFCu },
		{ "kt.flood=", ACT_FLOOD,  0, 0x100000000ull },
		{ "kt.ports",  ACT_PORTS,  0, 0 },
		{ "kt.com2=",  ACT_COM2,   0, 0x100000000ull },
		{ "kt.panic",  ACT_PANIC,  0, 0 },
		{ "kt.hang",   ACT_HANG,   0, 0 },
		{ "kt.spin",   ACT_SPIN,   0, 0 },
		{ "kt.triple", ACT_TRIPLE, 0, 0 },
		{ "kt.reset",  ACT_RESET,  0, 0 },
		{ "kt.smp",       ACT_SMP,       0, 0 },
		{ "kt.ap.spin",   ACT_AP_SPIN,   0, 0 },
		{ "kt.ap.triple", ACT_AP_TRIPLE, 0, 0 },
		{ "kt.ap.poke=",  ACT_AP_POKE,   1, 0xFFFFFFFCu },
	};
	for (uint32_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		const char *name = table[i].name;
		uint32_t n = string_size(name) - 1;
		struct action a = { table[i].kind, 0 };

		if (name[n - 1] == '=') {
			if (!has_prefix(w, len, name))
				continue;
			if (!parse_number(w + n, len - n, table[i].hex, table[i].max, &a.arg)) {
				bad_word(w, len, table[i].hex ? "want a 0x hex address" : "want a decimal number in range");
				return;
			}
		} else if (!is_word(w, len, name)) {
			continue;
		}
		if (n_actions == MAX_ACTIONS) {
			bad_word(w, len, "too many kt.* actions");
			return;
		}
		actions[n_actions++] = a;
		return;
	}
	bad_word(w, len, "unknown kt.* action");
}

/* Splits the command line into space-separated words; keeps the kt.* ones. */
static void parse_cmdline(const char *cmdline)
{
	const char *p = cmdline, *end = cmdline + string_size(cmdline) - 1;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *w = p;
		while (p < end && *p != ' ' && *p != '\t')
			p++;
		if (p > w && has_prefix(w, (uint32_t)(p - w), "kt."))
			parse_word(w, (uint32_t)(p - w));
	}
}

/* N characters of a 62-character cycle, in lines of 64: a lost or
 * repeated line shows as a break in the pattern. */
static void flood(uint64_t n)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	uint32_t k = 0, col = 0;

	for (; n; n--) {
		serial_putc(alphabet[k]);
		if (++k == sizeof alphabet - 1)
			k = 0;
		if (++col == 64) {
			serial_putc('\n');
			col = 0;
		}
	}
	if (col)
		serial_putc('\n');
	print("kt: flood done\n");
}

/*
 * N bytes of hostile traffic on COM2, the channel kvmboot's memtest guest
 * reports on: start bytes (0xA5) followed by lengths past any frame,
 * frames with bad checks, frames cut off by another start byte, and plain
 * garbage. A host decoder must survive it with bounded memory. Where no
 * UART answers (LSR reads all-ones) the bytes just vanish.
 */
static void com2_garbage(uint64_t n)
{
	static const uint8_t pattern[] = {
		0xA5, 0xFF, 0x00, 0xFF,				/* length 255: past MaxPayload */
		0xA5, 'F', 0x01, 0x04, 1, 2, 3, 4, 0x00,	/* bad check */
		0xA5, 'D', 0x02, 0x0C, 0xA5, 0xA5,		/* cut off by start bytes */
		0x00, 0x13, 0x37, 0xA5,				/* garbage and a dangling start */
	};
	uint32_t k = 0;

	for (; n; n--) {
		for (uint32_t spin = 0; spin < 100000 && !(inb(0x2FD) & 0x20); spin++)
			;
		outb(0x2F8, pattern[k]);
		if (++k == sizeof pattern)
			k = 0;
	}
	print("kt: com2 done\n");
}

/* Ports nothing on a PC answers: reads give 0xff, writes vanish. */
static void touch_unassigned_ports(void)
{
	for (uint16_t port = 0x100; port < 0x120; port++) {
		outb(port, 0x5a);
		(void)inb(port);
	}
	for (uint16_t port = 0x2e0; port < 0x2e4; port++) {
		outb(port, 0xa5);
		(void)inb(port);
	}
	print("kt: ports done\n");
}

static __attribute__((noreturn)) void triple_fault(void)
{
	static const struct __attribute__((packed)) {
		uint16_t limit;
		uint32_t base;
	} empty_idt = { 0, 0 };

	/*
	 * #UD -> #GP (vector 6 is beyond the IDT limit) -> #DF -> shutdown.
	 * ud2 rather than int3: this host's KVM (kvm_pvm) fails to emulate a
	 * software interrupt through an empty IDT (KVM_EXIT_INTERNAL_ERROR)
	 * but turns a fault into a proper shutdown; TCG does both.
	 */
	__asm__ volatile("lidt %0; ud2" : : "m"(empty_idt));
	halt_forever();
}

/* Runs the actions in order; returns the exit status for port 0xf4. */
static uint32_t run_actions(uint32_t status)
{
	for (uint32_t i = 0; i < n_actions; i++) {
		uint32_t addr = (uint32_t)actions[i].arg;
		uint32_t v;

		switch (actions[i].kind) {
		case ACT_EXIT:
			status = addr;
			break;
		case ACT_POKE:
			__asm__ volatile("movl %1, (%0)" : : "r"(addr), "r"(0xDEADBEEFu) : "memory");
			print("kt: poke %x done\n", addr);
			break;
		case ACT_PEEK:
			__asm__ volatile("movl (%1), %0" : "=r"(v) : "r"(addr) : "memory");
			print("kt: peek %x=%x\n", addr, v);
			break;
		case ACT_FLOOD:
			flood(actions[i].arg);
			break;
		case ACT_PORTS:
			touch_unassigned_ports();
			break;
		case ACT_COM2:
			com2_garbage(actions[i].arg);
			break;
		case ACT_PANIC:
			print("Kernel panic - not syncing: kvmboot test kernel asked to panic\n");
			halt_forever();
		case ACT_HANG:
			halt_forever();
		case ACT_SPIN:
			__asm__ volatile("cli; 1: jmp 1b");
			__builtin_unreachable();
		case ACT_TRIPLE:
			triple_fault();
		case ACT_RESET:
			outb(0x64, 0xFE);	/* keyboard controller: pulse reset */
			halt_forever();
		case ACT_SMP:
		case ACT_AP_SPIN:
		case ACT_AP_TRIPLE:
		case ACT_AP_POKE:
			break;		/* check_smp's */
		}
	}
	return status;
}

/* ---- Several processors: kt.smp ----------------------------------------- */

/*
 * kt.smp starts every application processor (AP) the MP table lists, as
 * an OS does on a PC (Intel MP specification 1.4, appendix B): it finds
 * the MP floating pointer where the specification says to look, reads the
 * processors' local APIC IDs from the configuration table, copies the
 * start-up code (ap.S) to a free page below 1 MiB, and sends each AP an
 * INIT and two startup IPIs naming that page. Each AP prints its APIC ID
 * and counts itself in; the bootstrap processor waits for them all and
 * checks that exactly the table's APs came. Then each AP halts, except
 * that with kt.ap.spin, kt.ap.triple or kt.ap.poke=ADDR the AP with the
 * highest APIC ID waits for the result line and then spins with
 * interrupts off, triple-faults, or stores 0xDEADBEEF at ADDR.
 *
 *   kt: smp cpus=N bsp=ID trampoline=0x...   the table's processors, this
 *                                             one's APIC ID, the page
 *   kt: ap apic=ID                            printed by each AP
 *   kt: smp arrived=M of=N-1
 */

#include "smp.h"

/* Local APIC registers (Intel SDM vol. 3, chapter 10) and ICR commands. */
#define LAPIC_ID		0x20
#define LAPIC_SVR		0xF0
#define LAPIC_SVR_ENABLE	0x100
#define LAPIC_ICR_LO		0x300
#define LAPIC_ICR_HI		0x310
#define ICR_PENDING		(1u << 12)
#define ICR_INIT_ASSERT		0xC500	/* INIT, level-triggered, assert */
#define ICR_INIT_DEASSERT	0x8500
#define ICR_STARTUP		0x0600	/* | the start page's number */

/* The PIT, channel 0 at 1.193182 MHz, for the specification's delays. */
#define PIT_10MS	11932
#define PIT_200US	239
#define PIT_AP_WAIT	(5u * 1193182)	/* how long the APs get to come */

struct __attribute__((packed)) mp_floating {
	char sig[4];		/* "_MP_" */
	uint32_t config;	/* the configuration table */
	uint8_t length, revision, checksum, features[5];
};

struct __attribute__((packed)) mp_config {
	char sig[4];		/* "PCMP" */
	uint16_t length;
	uint8_t revision, checksum;
	char oem[8], product[12];
	uint32_t oem_table;
	uint16_t oem_size, count;
	uint32_t lapic;		/* the local APICs' address */
	uint16_t ext_length;
	uint8_t ext_checksum, reserved;
};

#define MP_PROCESSOR		0
#define MP_CPU_ENABLED		1
#define MP_CPU_BOOTSTRAP	2

extern const char kt_ap_trampoline[], kt_ap_trampoline_end[];	/* ap.S */
extern const char kt_ap_gdt[], kt_ap_gdt_end[];
void kt_ap_entry32(void);
void kt_ap_main(uint32_t ticket);

volatile uint32_t kt_ap_tickets;	/* ap.S takes a ticket per AP */
uint8_t kt_ap_stacks[KT_MAX_CPUS << AP_STACK_SHIFT] __attribute__((aligned(16)));	/* ticket t: stack t+1 */

static uint32_t lapic_base;
static volatile uint32_t ap_arrived, ap_go, print_lock;
static volatile uint32_t ap_ids[KT_MAX_APS];	/* by ticket */
static enum action_kind ap_action;		/* ACT_AP_*, or ACT_SMP for none */
static uint32_t ap_poke_addr, ap_misbehaver;	/* the AP that does ap_action */

static uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)opaque(lapic_base + reg);
}

static void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)opaque(lapic_base + reg) = v;
}

static void spin_lock(volatile uint32_t *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
}

static void spin_unlock(volatile uint32_t *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

static uint8_t byte_sum(uint32_t at, uint32_t n)
{
	uint8_t sum = 0;
	for (uint32_t i = 0; i < n; i++)
		sum += *(const volatile uint8_t *)opaque(at + i);
	return sum;
}

static const struct mp_floating *mp_scan(uint32_t start, uint32_t len)
{
	for (uint32_t at = start; at + 16 <= start + len; at += 16) {
		const struct mp_floating *f = (const struct mp_floating *)opaque(at);
		if (f->sig[0] == '_' && f->sig[1] == 'M' && f->sig[2] == 'P' && f->sig[3] == '_' &&
		    f->length == 1 && byte_sum(at, 16) == 0)
			return f;
	}
	return NULL;
}

/* The MP floating pointer: in the first KiB of the EBDA, the last KiB of
 * base memory, or the BIOS ROM at 0xF0000-0xFFFFF. */
static const struct mp_floating *mp_find(void)
{
	uint32_t ebda = (uint32_t)*(const volatile uint16_t *)opaque(0x40E) << 4;
	uint32_t base_kib = *(const volatile uint16_t *)opaque(0x413);
	const struct mp_floating *f = NULL;

	if (ebda >= 0x80000 && ebda < 0xA0000)
		f = mp_scan(ebda, 1024);
	if (f == NULL && base_kib >= 512 && base_kib <= 640)
		f = mp_scan(base_kib * 1024 - 1024, 1024);
	if (f == NULL)
		f = mp_scan(0xF0000, 0x10000);
	return f;
}

/* A range the start-up page must not overlap. */
struct span {
	uint32_t start, len;
};

static int spans_overlap(uint32_t start, uint32_t len, struct span s)
{
	return s.len && start < s.start + s.len && s.start < start + len;
}

/* Is [start, start+len) inside RAM the memory map calls available? */
static int available(const struct mb_info *mbi, uint32_t start, uint32_t len)
{
	const struct mb_mmap_entry *m;
	uint32_t n = 0;
	int inside = 0;

	for (m = mmap_next(mbi, NULL, &n); m && m->size >= 20; m = mmap_next(mbi, m, &n)) {
		uint64_t s = start, e = (uint64_t)start + len;
		if (m->type != 1 && m->base < e && s < m->base + m->len)
			return 0;
		if (m->type == 1 && m->base <= s && e <= m->base + m->len)
			inside = 1;
	}
	return inside;
}

/*
 * trampoline_page picks the page for the start-up code: the highest page
 * below the EBDA and VGA memory that the memory map calls available and
 * that holds nothing still in use: the Multiboot information and what it
 * points at, the GDT and TSS this processor runs on, the real-mode part.
 * 0 when there is none.
 */
static uint32_t trampoline_page(const struct mb_info *mbi)
{
	struct span busy[16 + 64];
	uint32_t n = 0;
	struct __attribute__((packed)) { uint16_t limit; uint32_t base; } gdtr;
	uint16_t tr;

	if (!(mbi->flags & MBI_MMAP))
		return 0;
	__asm__ volatile("sgdt %0; str %1" : "=m"(gdtr), "=r"(tr));
	busy[n++] = (struct span){ gdtr.base, (uint32_t)gdtr.limit + 1 };
	if (tr >= 8 && tr + 8u <= (uint32_t)gdtr.limit + 1) {
		const volatile uint8_t *d = (const volatile uint8_t *)opaque(gdtr.base + (tr & ~7u));
		uint32_t base = d[2] | (uint32_t)d[3] << 8 | (uint32_t)d[4] << 16 | (uint32_t)d[7] << 24;
		busy[n++] = (struct span){ base, (d[0] | (uint32_t)d[1] << 8 | (uint32_t)(d[6] & 0xF) << 16) + 1 };
	}
	busy[n++] = (struct span){ (uint32_t)mbi, sizeof *mbi };
	busy[n++] = (struct span){ mbi->mmap_addr, mbi->mmap_length };
	if (mbi->flags & MBI_CMDLINE)
		busy[n++] = (struct span){ mbi->cmdline, string_size((const char *)mbi->cmdline) };
	if (mbi->flags & MBI_LOADER_NAME)
		busy[n++] = (struct span){ mbi->boot_loader_name, string_size((const char *)mbi->boot_loader_name) };
	if (kt_realmode_addr)
		busy[n++] = (struct span){ kt_realmode_addr, RM_SIZE };
	if (mbi->flags & MBI_MODS) {
		const struct mb_module *mods = (const struct mb_module *)mbi->mods_addr;
		busy[n++] = (struct span){ mbi->mods_addr, mbi->mods_count * sizeof *mods };
		for (uint32_t i = 0; i < mbi->mods_count && i < 64; i++) {
			busy[n++] = (struct span){ mods[i].start, mods[i].end - mods[i].start };
			if (mods[i].string)
				busy[n++] = (struct span){ mods[i].string, string_size((const char *)mods[i].string) };
		}
	}
	for (uint32_t page = 0x9E000; page >= 0x1000; page -= 0x1000) {
		int free = available(mbi, page, 0x1000);
		for (uint32_t i = 0; i < n && free; i++)
			free = !spans_overlap(page, 0x1000, busy[i]);
		if (free)
			return page;
	}
	return 0;
}

static uint16_t pit_count(void)
{
	outb(0x43, 0x00);	/* latch channel 0 */
	uint8_t lo = inb(0x40);
	return (uint16_t)(lo | inb(0x40) << 8);
}

/* Waits ticks of the PIT, or until *count reaches want (count not NULL);
 * returns whether it did. Bounded in reads too: a PIT that does not count
 * must not hang us. */
static int pit_wait(uint32_t ticks, const volatile uint32_t *count, uint32_t want)
{
	uint32_t prev = pit_count(), elapsed = 0;

	for (uint32_t reads = 0; elapsed < ticks && reads < 50000000u; reads++) {
		if (count && *count >= want)
			return 1;
		uint32_t now = pit_count();
		elapsed += (prev - now) & 0xFFFF;
		prev = now;
	}
	return count && *count >= want;
}

static int send_ipi(uint32_t apic_id, uint32_t icr)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr);
	for (uint32_t i = 0; i < 1000000; i++)
		if (!(lapic_read(LAPIC_ICR_LO) & ICR_PENDING))
			return 1;
	fail("smp", "IPI %x to APIC %u still pending", icr, apic_id);
	return 0;
}

/* Reads the MP table's processors into ids (at most max); returns how
 * many, the bootstrap processor's ID in *bsp; 0 after a failure. */
static uint32_t mp_processors(const struct mp_config *c, uint32_t *ids, uint32_t max, uint32_t *bsp)
{
	const uint8_t *e = (const uint8_t *)(c + 1), *end = (const uint8_t *)c + c->length;
	uint32_t n = 0;

	for (uint32_t i = 0; i < c->count; i++) {
		uint32_t size = e[0] == MP_PROCESSOR ? 20 : 8;
		if (e[0] > 4 || e + size > end) {
			fail("smp", "MP table entry %u (type %u) is malformed", i, e[0]);
			return 0;
		}
		if (e[0] == MP_PROCESSOR && (e[3] & MP_CPU_ENABLED)) {
			if (e[3] & MP_CPU_BOOTSTRAP)
				*bsp = e[1];
			if (n == max) {
				fail("smp", "more than %u processors in the MP table", max);
				return 0;
			}
			ids[n++] = e[1];
		}
		e += size;
	}
	return n;
}

static void check_smp(const struct entry_state *st)
{
	const struct mb_info *mbi = (const struct mb_info *)st->info;
	const struct mp_floating *mp = mp_find();
	const struct mp_config *c;
	uint32_t ids[KT_MAX_CPUS], n, bsp = 0xFFFFFFFFu, self, page;

	if (mp == NULL) {
		fail("smp", "no MP floating pointer in the EBDA, the last KiB of base memory or the BIOS ROM");
		return;
	}
	c = (const struct mp_config *)mp->config;
	if (c->sig[0] != 'P' || c->sig[1] != 'C' || c->sig[2] != 'M' || c->sig[3] != 'P' ||
	    c->length < sizeof *c || byte_sum(mp->config, c->length) != 0) {
		fail("smp", "no valid MP configuration table at %x", mp->config);
		return;
	}
	if ((n = mp_processors(c, ids, KT_MAX_CPUS, &bsp)) == 0)
		return;
	lapic_base = c->lapic;
	self = lapic_read(LAPIC_ID) >> 24;
	page = st->magic == MB_BOOT_MAGIC && st->info ? trampoline_page(mbi) : 0;
	print("kt: smp cpus=%u bsp=%u trampoline=%x\n", n, self, page);
	if (bsp != self) {
		fail("smp", "the MP table's bootstrap processor is APIC %u, this one is %u", bsp, self);
		return;
	}
	if (page == 0) {
		fail("smp", "no free page of available RAM below 640 KiB for the start-up code");
		return;
	}
	for (uint32_t i = 0; i < AP_FAR + 6; i++)
		((volatile uint8_t *)opaque(page))[i] = i < (uint32_t)(kt_ap_trampoline_end - kt_ap_trampoline) ? kt_ap_trampoline[i] : 0;
	*(volatile uint16_t *)opaque(page + AP_GDTR) = (uint16_t)(kt_ap_gdt_end - kt_ap_gdt - 1);
	*(volatile uint32_t *)opaque(page + AP_GDTR + 2) = (uint32_t)kt_ap_gdt;
	*(volatile uint32_t *)opaque(page + AP_FAR) = (uint32_t)kt_ap_entry32;
	*(volatile uint16_t *)opaque(page + AP_FAR + 4) = AP_CODE_SEL;

	ap_misbehaver = 0xFFFFFFFFu;
	for (uint32_t i = 0; i < n && ap_action != ACT_SMP; i++)
		if (ids[i] != self && (ap_misbehaver == 0xFFFFFFFFu || ids[i] > ap_misbehaver))
			ap_misbehaver = ids[i];

	lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | LAPIC_SVR_ENABLE);
	outb(0x43, 0x34);	/* PIT channel 0: mode 2, count 65536 */
	outb(0x40, 0);
	outb(0x40, 0);
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] != self && (!send_ipi(ids[i], ICR_INIT_ASSERT) || !send_ipi(ids[i], ICR_INIT_DEASSERT)))
			return;
	pit_wait(PIT_10MS, NULL, 0);
	for (uint32_t sipi = 0; sipi < 2; sipi++) {
		for (uint32_t i = 0; i < n; i++)
			if (ids[i] != self && !send_ipi(ids[i], ICR_STARTUP | page >> 12))
				return;
		pit_wait(PIT_200US, NULL, 0);
	}
	pit_wait(PIT_AP_WAIT, &ap_arrived, n - 1);

	/* APs that come late print too: from here on, take turns. */
	spin_lock(&print_lock);
	uint32_t arrived = ap_arrived;
	print("kt: smp arrived=%u of=%u\n", arrived, n - 1);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t seen = 0;
		for (uint32_t t = 0; t < arrived && t < KT_MAX_APS; t++)
			seen += ap_ids[t] == ids[i];
		if (ids[i] != self && seen != 1)
			fail("smp", "APIC %u came %u times", ids[i], seen);
	}
	for (uint32_t t = 0; t < arrived && t < KT_MAX_APS; t++) {
		uint32_t listed = 0;
		for (uint32_t i = 0; i < n; i++)
			listed |= ids[i] == ap_ids[t] && ids[i] != self;
		if (!listed)
			fail("smp", "APIC %u came, which the MP table does not list as an AP", ap_ids[t]);
	}
	spin_unlock(&print_lock);
}

/* An AP, from ap.S: report, count in, then halt or misbehave. */
void kt_ap_main(uint32_t ticket)
{
	uint32_t id = lapic_read(LAPIC_ID) >> 24;

	ap_ids[ticket] = id;
	spin_lock(&print_lock);
	print("kt: ap apic=%u\n", id);
	spin_unlock(&print_lock);
	__atomic_add_fetch(&ap_arrived, 1, __ATOMIC_RELEASE);
	if (id != ap_misbehaver)
		halt_forever();
	while (!__atomic_load_n(&ap_go, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
	switch (ap_action) {
	case ACT_AP_SPIN:
		__asm__ volatile("cli; 1: jmp 1b");
		__builtin_unreachable();
	case ACT_AP_TRIPLE:
		triple_fault();
	case ACT_AP_POKE:
		__asm__ volatile("movl %1, (%0)" : : "r"(ap_poke_addr), "r"(0xDEADBEEFu) : "memory");
		halt_forever();
	default:
		halt_forever();
	}
}

/* Runs check_smp when the command line asks for it (kt.smp, and what the
 * APs do: the last kt.ap.* word). */
static void smp_from_cmdline(const struct entry_state *st)
{
	int smp = 0;

	ap_action = ACT_SMP;
	for (uint32_t i = 0; i < n_actions; i++) {
		switch (actions[i].kind) {
		case ACT_SMP:
			smp = 1;
			break;
		case ACT_AP_POKE:
			ap_poke_addr = (uint32_t)actions[i].arg;
			/* fall through */
		case ACT_AP_SPIN:
		case ACT_AP_TRIPLE:
			ap_action = actions[i].kind;
			break;
		default:
			break;
		}
	}
	if (smp)
		check_smp(st);
	else if (ap_action != ACT_SMP)
		fail("smp", "a kt.ap.* word without kt.smp: no AP runs");
}

/* ---- Main ------------------------------------------------------------------ */

void kmain(const struct entry_state *st)
{
	const char *cmdline;
	uint32_t status;

	serial_init();
	/* Start on a line of our own: firmware may have left a partial one. */
	print("\nkt: hello kvmboot-testkernel " KT_VERSION "\n");

	img_base = st->base;
	img_size = st->size;

	cmdline = report_multiboot(st);
	check_realmode(st);
	check_cpu(st);
	check_relocations(st);
	check_absolute_symbols(st);

	print("kt: bss zero=%s\n", st->bss_nonzero ? "no" : "yes");
	if (st->bss_nonzero)
		fail("bss", "not zeroed by the loader: non-zero dword at %x", st->bss_nonzero);

	parse_cmdline(cmdline);
	smp_from_cmdline(st);

	print("kt: result %s failures=%u\n", failures ? "fail" : "pass", failures);
	__atomic_store_n(&ap_go, 1, __ATOMIC_RELEASE);

	status = run_actions(failures ? 1 : 0);
	outb(0xF4, (uint8_t)status);	/* isa-debug-exit / kvmboot: exit status */
	halt_forever();
}
