/*
 * acpi.c: does the machine hand over ACPI tables an OS can use, and do
 * they describe the devices that are there?
 *
 * A Multiboot kernel (flat 32-bit, paging off) that does what an OS does
 * at boot:
 *
 *   - finds the RSDP by the standard search: the first KiB of the EBDA
 *     (segment at 0040:000E), then 0xE0000-0xFFFFF, 16-byte steps, the
 *     signature and the checksum of the first 20 bytes (all 36 from
 *     revision 2);
 *   - walks the RSDT and the XSDT (which must list the same tables),
 *     checks every table's checksum, follows the FADT to the DSDT and the
 *     FACS;
 *   - checks the hardware against the tables: the PM timer the FADT names
 *     counts, SCI_EN is set when the FADT has no SMI command port, the
 *     processor running this is an enabled local APIC of the MADT, the
 *     I/O APIC answers at its address with its ID, an HPET (when the
 *     tables list one) has the block ID the table gives and its counter
 *     runs.
 *
 * Every step prints a "pc: " line on COM1; the verdict goes to the
 * debug-exit port (0 pass, else one of the V_ values below; V_NO_RSDP is
 * what a machine without ACPI gives). e2e/conformance_pc_test.go boots it
 * on every backend beside QEMU's -kernel (SeaBIOS, QEMU's own tables).
 * Build: scripts/build-conformance-pc.sh.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

enum {
	V_PASS = 0,
	V_NO_RSDP = 2,    /* the standard search finds no RSDP */
	V_CHECKSUM = 3,   /* a table does not sum to 0, or has the wrong signature */
	V_ROOTS = 4,      /* the RSDT and the XSDT list different tables */
	V_MISSING = 5,    /* no FADT, MADT or DSDT */
	V_PM_TIMER = 6,   /* the FADT's PM timer does not count */
	V_SCI_EN = 7,     /* no SMI command port, yet not in ACPI mode */
	V_LAPIC = 8,      /* this processor's APIC ID is not an enabled MADT entry */
	V_IOAPIC = 9,     /* the I/O APIC's ID is not the MADT's */
	V_HPET_ID = 10,   /* the HPET's capabilities are not the table's block ID */
	V_HPET_COUNT = 11, /* the HPET's counter does not run */
	V_FACS = 12,      /* the FADT's FACS is not one */
};

#define COM1 0x3f8
#define DEBUG_EXIT 0xf4
#define SPIN 1000000 /* reads of a counter before calling it stuck */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u16 inw(u16 port)
{
	u16 v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u32 inl(u16 port)
{
	u32 v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* phys: a pointer to physical address a (paging is off), hidden from
 * the compiler's bounds reasoning about small constant addresses. */
static inline volatile void *phys(u32 a)
{
	volatile void *p = (volatile void *)a;
	__asm__("" : "+r"(p));
	return p;
}
static u8 rd8(u32 a) { return *(volatile u8 *)phys(a); }
static u16 rd16(u32 a) { return *(volatile u16 *)phys(a); }
static u32 rd32(u32 a) { return *(volatile u32 *)phys(a); }
static void wr32(u32 a, u32 v) { *(volatile u32 *)phys(a) = v; }

static void putc(char c)
{
	for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		;
	outb(COM1, c);
}

static void puts(const char *s)
{
	while (*s) {
		if (*s == '\n')
			putc('\r');
		putc(*s++);
	}
}

static void hex(u32 v, int digits)
{
	for (int i = digits - 1; i >= 0; i--)
		putc("0123456789abcdef"[(v >> (4 * i)) & 15]);
}

static void dec(u32 v)
{
	char b[11];
	int n = 0;
	do {
		b[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		putc(b[--n]);
}

/* text: n characters at physical address a (a signature, an OEM ID). */
static void text(u32 a, int n)
{
	for (int i = 0; i < n; i++) {
		char c = rd8(a + i);
		putc(c >= ' ' && c < 127 ? c : '?');
	}
}

static void verdict(int v, const char *why)
{
	if (v == V_PASS) {
		puts("pc: verdict pass\n");
	} else {
		puts("pc: verdict fail ");
		puts(why);
		puts("\n");
	}
	outb(DEBUG_EXIT, v);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static u8 sum(u32 a, u32 n)
{
	u8 s = 0;
	for (u32 i = 0; i < n; i++)
		s += rd8(a + i);
	return s;
}

static int sig(u32 a, const char *s)
{
	for (int i = 0; i < 4; i++)
		if (rd8(a + i) != (u8)s[i])
			return 0;
	return 1;
}

/* rsdp_at: an RSDP at a, its checksums right. */
static int rsdp_at(u32 a)
{
	static const char s[8] = "RSD PTR ";
	for (int i = 0; i < 8; i++)
		if (rd8(a + i) != (u8)s[i])
			return 0;
	if (sum(a, 20))
		return 0;
	return rd8(a + 15) < 2 || sum(a, rd32(a + 20)) == 0;
}

static u32 find_rsdp(void)
{
	u32 ebda = (u32)rd16(0x40e) << 4;
	if (ebda >= 0x400 && ebda < 0xa0000)
		for (u32 a = ebda; a < ebda + 1024; a += 16)
			if (rsdp_at(a))
				return a;
	for (u32 a = 0xe0000; a < 0x100000; a += 16)
		if (rsdp_at(a))
			return a;
	return 0;
}

/* table: print and check the table at a; its signature must be want
 * (any when 0). Returns its length. */
static u32 table(u32 a, const char *want)
{
	u32 len = rd32(a + 4);
	puts("pc: table ");
	text(a, 4);
	puts(" at ");
	hex(a, 8);
	puts(" len ");
	dec(len);
	puts(" rev ");
	dec(rd8(a + 8));
	puts(" oem ");
	text(a + 10, 6);
	puts(" ");
	text(a + 16, 8);
	puts("\n");
	if ((want && !sig(a, want)) || len < 36 || len > 0x10000)
		verdict(V_CHECKSUM, "a table has the wrong signature or length");
	if (sum(a, len))
		verdict(V_CHECKSUM, "a table's checksum");
	return len;
}

#define MAX_TABLES 32
static u32 listed[MAX_TABLES];
static int nlisted;

static u32 find_table(const char *s)
{
	for (int i = 0; i < nlisted; i++)
		if (sig(listed[i], s))
			return listed[i];
	return 0;
}

/* counts: whether reading the counter at port (its low bits, mask) sees
 * it move within SPIN reads. */
static int port_counts(u16 port, u32 mask)
{
	u32 t0 = inl(port) & mask;
	for (int i = 0; i < SPIN; i++)
		if ((inl(port) & mask) != t0)
			return 1;
	return 0;
}

static void check_fadt(u32 f)
{
	u32 dsdt = rd32(f + 40), facs = rd32(f + 36);
	u32 smi = rd32(f + 48), evt = rd32(f + 56), cnt = rd32(f + 64), tmr = rd32(f + 76);
	u32 flags = rd32(f + 112);
	if (rd32(f + 4) >= 148 && rd32(f + 140))
		dsdt = rd32(f + 140); /* X_DSDT */
	puts("pc: fadt sci ");
	dec(rd16(f + 46));
	puts(" smi_cmd ");
	hex(smi, 4);
	puts(" pm1a_evt ");
	hex(evt, 4);
	puts(" pm1a_cnt ");
	hex(cnt, 4);
	puts(" pm_tmr ");
	hex(tmr, 4);
	puts(" flags ");
	hex(flags, 8);
	puts(" boot_arch ");
	hex(rd16(f + 109), 4);
	puts("\n");
	table(dsdt, "DSDT");
	if (!facs || !sig(facs, "FACS") || rd32(facs + 4) < 64 || (facs & 63))
		verdict(V_FACS, "the FADT's FACS");
	puts("pc: facs at ");
	hex(facs, 8);
	puts("\n");
	if (!port_counts(tmr, 0xffffff))
		verdict(V_PM_TIMER, "the PM timer does not count");
	puts("pc: pm timer counts\n");
	if (!smi && !(inw(cnt) & 1))
		verdict(V_SCI_EN, "no SMI command port, yet SCI_EN is clear");
}

static void check_madt(u32 m)
{
	u32 lapic = rd32(m + 36), len = rd32(m + 4);
	u32 my_id = rd32(lapic + 0x20) >> 24;
	int mine = 0;
	puts("pc: madt lapic ");
	hex(lapic, 8);
	puts(" flags ");
	hex(rd32(m + 40), 8);
	puts(" this cpu ");
	dec(my_id);
	puts("\n");
	for (u32 e = m + 44; e + 2 <= m + len && rd8(e + 1) >= 2; e += rd8(e + 1)) {
		switch (rd8(e)) {
		case 0:
			puts("pc: madt cpu uid ");
			dec(rd8(e + 2));
			puts(" apic ");
			dec(rd8(e + 3));
			puts(" flags ");
			hex(rd32(e + 4), 8);
			puts("\n");
			if (rd8(e + 3) == my_id && (rd32(e + 4) & 1))
				mine = 1;
			break;
		case 1: {
			u32 addr = rd32(e + 4);
			wr32(addr, 0); /* IOREGSEL: the ID register */
			u32 id = rd32(addr + 0x10) >> 24 & 15;
			wr32(addr, 1); /* the version register: pins - 1 in bits 16-23 */
			u32 pins = (rd32(addr + 0x10) >> 16 & 0xff) + 1;
			puts("pc: madt ioapic id ");
			dec(rd8(e + 2));
			puts(" at ");
			hex(addr, 8);
			puts(" gsi ");
			dec(rd32(e + 8));
			puts(" answers id ");
			dec(id);
			puts(" pins ");
			dec(pins);
			puts("\n");
			if (id != rd8(e + 2))
				verdict(V_IOAPIC, "the I/O APIC answers with another ID");
			break;
		}
		case 2:
			puts("pc: madt override irq ");
			dec(rd8(e + 3));
			puts(" gsi ");
			dec(rd32(e + 4));
			puts(" flags ");
			hex(rd16(e + 8), 4);
			puts("\n");
			break;
		case 4:
			puts("pc: madt nmi uid ");
			hex(rd8(e + 2), 2);
			puts(" lint ");
			dec(rd8(e + 5));
			puts("\n");
			break;
		default:
			puts("pc: madt entry type ");
			dec(rd8(e));
			puts("\n");
		}
	}
	if (!mine)
		verdict(V_LAPIC, "this processor is not an enabled local APIC of the MADT");
}

static void check_hpet(u32 h)
{
	u32 base = rd32(h + 44), id = rd32(h + 36);
	u32 caps = rd32(base), period = rd32(base + 4);
	puts("pc: hpet at ");
	hex(base, 8);
	puts(" block id ");
	hex(id, 8);
	puts(" capabilities ");
	hex(caps, 8);
	puts(" period fs ");
	dec(period);
	puts("\n");
	if (caps != id)
		verdict(V_HPET_ID, "the HPET's capabilities are not the table's block ID");
	u32 cfg = rd32(base + 0x10);
	wr32(base + 0x10, cfg | 1); /* ENABLE_CNF */
	u32 t0 = rd32(base + 0xf0);
	int runs = 0;
	for (int i = 0; i < SPIN && !runs; i++)
		runs = rd32(base + 0xf0) != t0;
	wr32(base + 0x10, cfg);
	if (!runs)
		verdict(V_HPET_COUNT, "the HPET's counter does not run");
	puts("pc: hpet counts\n");
}

void main(void)
{
	puts("pc: acpi: looking for the RSDP\n");
	u32 rsdp = find_rsdp();
	if (!rsdp)
		verdict(V_NO_RSDP, "no RSDP");
	u8 rev = rd8(rsdp + 15);
	u32 rsdt = rd32(rsdp + 16), xsdt = rev >= 2 ? rd32(rsdp + 24) : 0;
	puts("pc: rsdp at ");
	hex(rsdp, 8);
	puts(" rev ");
	dec(rev);
	puts(" oem ");
	text(rsdp + 9, 6);
	puts(" rsdt ");
	hex(rsdt, 8);
	puts(" xsdt ");
	hex(xsdt, 8);
	puts("\n");

	u32 n = (table(rsdt, "RSDT") - 36) / 4;
	for (u32 i = 0; i < n && nlisted < MAX_TABLES; i++)
		listed[nlisted++] = rd32(rsdt + 36 + 4 * i);
	if (xsdt) {
		u32 nx = (table(xsdt, "XSDT") - 36) / 8;
		if (nx != n)
			verdict(V_ROOTS, "the RSDT and the XSDT list different tables");
		for (u32 i = 0; i < nx && i < MAX_TABLES; i++)
			if (rd32(xsdt + 36 + 8 * i) != listed[i] || rd32(xsdt + 40 + 8 * i))
				verdict(V_ROOTS, "the RSDT and the XSDT list different tables");
	}
	puts("pc: tables");
	for (int i = 0; i < nlisted; i++) {
		puts(" ");
		text(listed[i], 4);
	}
	puts("\n");
	for (int i = 0; i < nlisted; i++)
		table(listed[i], 0);

	u32 fadt = find_table("FACP"), madt = find_table("APIC"), hpet = find_table("HPET");
	if (!fadt || !madt)
		verdict(V_MISSING, "no FADT or no MADT");
	check_fadt(fadt);
	check_madt(madt);
	if (hpet)
		check_hpet(hpet);
	verdict(V_PASS, "");
}
