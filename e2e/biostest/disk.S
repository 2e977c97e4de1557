/*
 * BIOS test program: int 13h on drive 80h, with a disk image (the plan
 * places it above 1 MiB) or without one (every call: CF=1 AH=01h).  It
 * learns the disk's size from AH=48h (0 when that fails) and reads around
 * its end.  e2e/bios_test.go holds the expected lines, computed from the
 * tables with the loader's models of each service.
 */
	.include "bt.inc"

	.set BUF_SEG,  0x2000     /* read buffer */
	.set DAP_SEG,  0x3000     /* packets and result buffers */
	.set DRIVE,    0x80

/* READ label, count, buffer seg, buffer off, LBA expression (32-bit,
 * from EAX), LBA high: AH=42h with the packet at DAP_SEG:0x100. */
.macro READ label, count, seg, off, high=0, flags=0x0003
	pushw	$DAP_SEG
	popw	%ds
	movw	$0x0010, 0x100
	movw	$\count, 0x102
	movw	$\off, 0x104
	movw	$\seg, 0x106
	movl	%eax, 0x108
	movl	$\high, 0x10c
	movw	$0x100, %si
	movl	$0x4200, %eax
	movl	$0x22222222, %ebx
	movl	$0x33333333, %ecx
	movl	$DRIVE, %edx
	T	\label, 0x13, \flags
	movw	$16, %cx
	MEM	\label-dap
	pushw	%cs
	popw	%ds
.endm

main:
	cld
	call	bios_check
	pushw	$0
	popw	%ds
	movw	$0x475, %si                /* BDA: number of hard disks */
	movw	$1, %cx
	MEM	bda-475
	pushw	%cs
	popw	%ds

	REGS	0x4100, 0x55aa, 0x33333333, DRIVE
	T	ext-check, 0x13
	REGS	0x4100, 0x1234, 0x33333333, DRIVE
	T	ext-check-nosig, 0x13
	REGS	0x4100, 0x55aa, 0x33333333, 0x81
	T	ext-check-81, 0x13
	REGS	0x0800, 0x22222222, 0x33333333, DRIVE
	T	params, 0x13
	REGS	0x0800, 0x22222222, 0x33333333, 0x81
	T	params-81, 0x13
	REGS	0x0000, 0x22222222, 0x33333333, DRIVE
	T	reset, 0x13
	REGS	0x4300, 0x22222222, 0x33333333, DRIVE
	T	write, 0x13
	REGS	0x1500, 0x22222222, 0x33333333, DRIVE
	T	disk-type, 0x13

	/* AH=48h: the size word says 0x1e; the BIOS fills 0x1a */
	pushw	$DAP_SEG
	popw	%ds
	xorw	%si, %si
	movw	$0x1e, (%si)
	REGS	0x4800, 0x22222222, 0x33333333, DRIVE
	T	ext-params, 0x13
	movw	$0x1e, %cx
	MEM	ext-params-buf
	movl	16(%si), %eax
	movl	%eax, %cs:sectors
	movw	$0x19, (%si)
	REGS	0x4800, 0x22222222, 0x33333333, DRIVE
	T	ext-params-small, 0x13
	pushw	%cs
	popw	%ds

	/* AH=42h: three sectors from LBA 5 */
	movl	$5, %eax
	READ	read, 3, BUF_SEG, 0
	call	sum_buffer
	/* the last sector; then one across the end and one past it */
	movl	%cs:sectors, %eax
	decl	%eax
	READ	read-last, 1, BUF_SEG, 0x800
	movl	%cs:sectors, %eax
	decl	%eax
	READ	read-across-end, 2, BUF_SEG, 0
	movl	%cs:sectors, %eax
	READ	read-past-end, 1, BUF_SEG, 0
	movl	$1, %eax
	READ	read-lba-high, 1, BUF_SEG, 0, 1
	movl	$0, %eax
	READ	read-count0, 0, BUF_SEG, 0
	movl	$0, %eax
	READ	read-count128, 128, BUF_SEG, 0
	/* buffers across the 1 MiB line */
	movl	$0, %eax
	READ	read-ffff, 1, 0xffff, 0
	movl	$0, %eax
	READ	read-f100, 127, 0xf100, 0
	/* interrupts on across the trip to protected mode */
	movl	$7, %eax
	READ	read-if, 1, BUF_SEG, 0x1000, 0, 0x0203
	/* a short packet */
	pushw	$DAP_SEG
	popw	%ds
	movb	$0x0f, 0x100
	REGS	0x4200, 0x22222222, 0x33333333, DRIVE
	movw	$0x100, %si
	T	read-short-dap, 0x13
	pushw	%cs
	popw	%ds
	/* the packet under another SS and an unrelated ES */
	OTHER_STACK
	pushw	$0x5555
	popw	%es
	movl	$9, %eax
	READ	read-ss, 1, BUF_SEG, 0x1200
	OWN_STACK
	pushw	%cs
	popw	%es
	/* 16 bytes of each sector read */
	pushw	$BUF_SEG
	popw	%ds
	movw	$16, %cx
	xorw	%si, %si
	MEM	buf-0000
	movw	$0x200, %si
	MEM	buf-0200
	movw	$0x400, %si
	MEM	buf-0400
	movw	$0x800, %si
	MEM	buf-0800
	movw	$0x1000, %si
	MEM	buf-1000
	movw	$0x1200, %si
	MEM	buf-1200
	pushw	%cs
	popw	%ds

	/* AH=02h CHS reads into BUF_SEG:0x1400 */
	pushw	$BUF_SEG
	popw	%es
	REGS	0x0201, 0x1400, 0x0001, DRIVE          /* C0 H0 S1: LBA 0 */
	T	chs-0-0-1, 0x13
	REGS	0x0202, 0x1600, 0x0003, 0x0100 + DRIVE /* C0 H1 S3: LBA 65 */
	T	chs-0-1-3, 0x13
	REGS	0x0201, 0x1400, 0x0000, DRIVE          /* sector 0 */
	T	chs-sector0, 0x13
	REGS	0x0201, 0x1400, 0x0001, 0xff00 + DRIVE /* head 255 */
	T	chs-head255, 0x13
	REGS	0x0200, 0x1400, 0x0001, DRIVE          /* no sectors */
	T	chs-count0, 0x13
	REGS	0x0201, 0x1400, 0xffff, DRIVE          /* C1023 S63 */
	T	chs-c1023, 0x13
	REGS	0x0201, 0x1400, 0x0001, 0x81
	T	chs-81, 0x13
	movw	$BUF_SEG, %ax
	movw	%ax, %ds
	movw	$0x1400, %si
	movw	$16, %cx
	MEM	buf-1400
	movw	$0x1600, %si
	MEM	buf-1600
	movw	$0x1800, %si
	MEM	buf-1800
	pushw	%cs
	popw	%ds
	pushw	%cs
	popw	%es

	call	dump_log
	jmp	done

/* sum_buffer: "bt: read-sum" and the 32-bit sum of the dwords at
 * BUF_SEG:0, 3 sectors. */
sum_buffer:
	pushw	%ds
	pushw	$BUF_SEG
	popw	%ds
	xorl	%eax, %eax
	xorw	%si, %si
	movw	$3 * 512 / 4, %cx
1:	addl	(%si), %eax
	addw	$4, %si
	loop	1b
	popw	%ds
	call	say
	.asciz	"bt: read-sum "
	call	hex32
	call	say
	.asciz	"\r\n"
	ret

	.balign 4
sectors: .long 0
old_ss:	.word 0
old_sp:	.word 0
