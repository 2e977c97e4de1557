/*
 * BIOS test program: the BDA, EBDA and IVT that bios_init set up, then
 * int 10h, 11h, 12h, 15h, 16h, 1Ah, the IRQ and default vectors, with
 * good and bad inputs, under other DS/SS/ES and with interrupts on.
 * e2e/bios_test.go holds the expected lines, computed from the tables.
 * The plan puts a 4 KiB pattern at HIGH (above 1 MiB) for int 15h AH=87h.
 */
	.include "bt.inc"

	.set BUF_SEG,  0x3000     /* buffers in another segment than ours */
	.set HIGH,     0x200000
	.set SMAP,     0x534d4150

main:
	cld
	call	bios_check

	/* ---- BDA, EBDA, IVT ---- */
	pushw	$0
	popw	%ds
	movw	$0x400, %si
	movw	$0x20, %cx
	MEM	bda-400
	movw	$0x449, %si
	movw	$3, %cx
	MEM	bda-449
	movw	$0x475, %si
	movw	$1, %cx
	MEM	bda-475
	movw	$0x484, %si
	movw	$3, %cx
	MEM	bda-484
	pushw	$0x9fc0
	popw	%ds
	xorw	%si, %si
	movw	$2, %cx
	MEM	ebda
	/* IVT: vectors in the ROM segment, like vector 0 (the default),
	 * like vector 8 (IRQ 0-7), like vector 70h (IRQ 8-15). */
	pushw	$0
	popw	%ds
	xorw	%bp, %bp                   /* BP: ROM segment */
	xorw	%bx, %bx                   /* BH: like 0 */
	xorw	%dx, %dx                   /* DL: like 8, DH: like 70h */
	xorw	%si, %si
	movw	$256, %cx
	movl	0, %edi
1:	movl	(%si), %eax
	cmpw	$0xf000, 2(%si)
	jne	2f
	incw	%bp
2:	cmpl	%edi, %eax
	jne	2f
	incb	%bh
2:	cmpl	0x08 * 4, %eax
	jne	2f
	incb	%dl
2:	cmpl	0x70 * 4, %eax
	jne	2f
	incb	%dh
2:	addw	$4, %si
	loop	1b
	pushw	%cs
	popw	%ds
	call	say
	.asciz	"bt: ivt rom="
	movw	%bp, %ax
	call	hex16
	call	say
	.asciz	" default="
	movb	%bh, %al
	call	hex8
	call	say
	.asciz	" irq0-7="
	movb	%dl, %al
	call	hex8
	call	say
	.asciz	" irq8-15="
	movb	%dh, %al
	call	hex8
	call	say
	.asciz	"\r\n"

	/* ---- int 11h, 12h ---- */
	REGS	0x11111111
	T	int11, 0x11
	REGS	0x11111111
	T	int12, 0x12

	/* ---- int 15h E820: the whole table into BUF_SEG:0x100 ---- */
	pushw	$BUF_SEG
	popw	%es
	movw	$0x100, %di
	movl	$0x13579bdf, %esi
	movl	$0x2468ace0, %ebp
	xorl	%ebx, %ebx
	movw	$0, %cs:e820_count
e820_loop:
	movl	$0xe820, %eax
	movl	$20, %ecx
	movl	$SMAP, %edx
	T	e820, 0x15
	jc	e820_end
	incw	%cs:e820_count
	pushw	%es
	popw	%ds
	movw	%di, %si
	movw	$20, %cx
	MEM	e820-entry
	pushw	%cs
	popw	%ds
	cmpw	$140, %cs:e820_count
	jae	e820_end
	testl	%ebx, %ebx
	jnz	e820_loop
e820_end:
	/* bad inputs */
	REGS	0xe820, 0, 20, SMAP + 1
	T	e820-signature, 0x15
	REGS	0xe820, 0, 19, SMAP
	T	e820-ecx19, 0x15
	REGS	0xe820, 0, 20, SMAP
	movw	%cs:e820_count, %bx
	T	e820-ebx-count, 0x15
	REGS	0xe820, 128, 20, SMAP
	T	e820-ebx128, 0x15
	REGS	0xe820, 0x10001, 20, SMAP
	T	e820-ebx10001, 0x15
	REGS	0xe820, 0xffffffff, 20, SMAP
	T	e820-ebx-1, 0x15
	/* a 24-byte buffer (ACPI 3.0 callers): ECX=20 back */
	REGS	0xe820, 0, 24, SMAP
	T	e820-ecx24, 0x15
	/* interrupts on: they stay on */
	REGS	0xe820, 1, 20, SMAP
	T	e820-if, 0x15, 0x0203
	/* direction flag set: the entry still goes forwards, DF stays */
	REGS	0xe820, 1, 20, SMAP
	T	e820-df, 0x15, 0x0403
	cld
	pushw	%es
	popw	%ds
	movw	%di, %si
	movw	$20, %cx
	MEM	e820-df-entry
	pushw	%cs
	popw	%ds

	/* ---- sizes, configuration, A20, wait ---- */
	REGS	0xe801
	T	e801, 0x15
	REGS	0x8800
	T	ext88, 0x15
	pushw	%cs
	popw	%es
	REGS	0xc000
	T	config, 0x15
	pushw	%es
	popw	%ds
	movw	%bx, %si
	movw	$10, %cx
	MEM	config-table
	pushw	%cs
	popw	%ds
	pushw	%cs
	popw	%es
	REGS	0xec00, 2
	T	ec00, 0x15
	REGS	0x8600, 0x22222222, 0, 1000
	T	wait, 0x15
	REGS	0x2403
	T	a20-support, 0x15
	REGS	0x2402
	T	a20-status-on, 0x15
	REGS	0x2400
	T	a20-off, 0x15
	REGS	0x2402
	T	a20-status-off, 0x15
	REGS	0x2401
	T	a20-on, 0x15
	REGS	0x2402
	T	a20-status-again, 0x15
	REGS	0x2404
	T	a20-unknown, 0x15

	/* ---- AH=87h: 32 bytes from HIGH+0x10 to BUF_SEG:0x200 ---- */
	pushw	%cs
	popw	%es
	movw	$move_gdt, %si
	REGS	0x8700, 0x22222222, 16
	T	move, 0x15
	pushw	$BUF_SEG
	popw	%ds
	movw	$0x200, %si
	movw	$32, %cx
	MEM	move-data
	pushw	%cs
	popw	%ds

	/* ---- unknown int 15h: logged twice, then from another DS/SS ---- */
	REGS	0x5300
	T	apm, 0x15
	REGS	0x5300
	T	apm-again, 0x15

	/* ---- another stack, a DS that means nothing ---- */
	OTHER_STACK
	pushw	$0x5555
	popw	%ds
	pushw	$BUF_SEG
	popw	%es
	movw	$0x300, %di
	REGS	0xe820, 0, 20, SMAP
	T	e820-ss, 0x15
	REGS	0xe801
	T	e801-ss, 0x15
	REGS	0xe980
	T	ist-ss, 0x15
	OWN_STACK
	pushw	%cs
	popw	%ds
	pushw	%cs
	popw	%es

	/* ---- int 10h ---- */
	movw	$tty_text, %si
1:	movb	%cs:(%si), %al
	testb	%al, %al
	jz	2f
	movb	$0x0e, %ah
	movw	$0x0007, %bx
	int	$0x10
	incw	%si
	jmp	1b
2:	REGS	0x0e0a
	T	tty, 0x10
	REGS	0x0f00
	T	video-mode, 0x10
	REGS	0x0300, 0x22220000
	T	cursor, 0x10
	REGS	0x1200, 0x22220010
	T	ega-info, 0x10
	REGS	0x4f00
	T	vbe, 0x10
	REGS	0x0003
	T	set-mode, 0x10
	REGS	0x1a00
	T	vga-dcc, 0x10

	/* ---- int 16h ---- */
	REGS	0x0000
	T	key-read, 0x16
	REGS	0x1000
	T	key-read-ext, 0x16
	REGS	0x0100
	T	key-check, 0x16
	REGS	0x1100
	T	key-check-ext, 0x16
	REGS	0x02ff
	T	shift, 0x16
	REGS	0x12ff
	T	shift-ext, 0x16
	REGS	0x0305
	T	typematic, 0x16
	REGS	0x0500
	T	key-store, 0x16

	/* ---- int 1Ah ---- */
	REGS	0x0200
	T	time, 0x1a
	REGS	0x0000
	T	ticks, 0x1a
	REGS	0x0400
	T	date, 0x1a
	REGS	0x0300
	T	set-time, 0x1a

	/* ---- hardware IRQ vectors (EOI and back) and a default vector ---- */
	REGS	0x11111111
	T	irq0, 0x08
	REGS	0x11111111
	T	irq15, 0x77, 0x0203
	REGS	0x11111111
	T	vector60, 0x60

	call	dump_log
	jmp	done

tty_text:
	.asciz	"bt: tty via int 10h\r"

	.balign 4
e820_count: .word 0
old_ss:	.word 0
old_sp:	.word 0

/* int 15h AH=87h descriptors: 0, 8 (unused), 10h source, 18h destination,
 * 20h and 28h (the BIOS's, unused) */
	.balign 8
move_gdt:
	.quad	0, 0
	.word	0xffff, (HIGH + 0x10) & 0xffff
	.byte	(HIGH + 0x10) >> 16, 0x93, 0, (HIGH + 0x10) >> 24
	.word	0xffff, (BUF_SEG * 16 + 0x200) & 0xffff
	.byte	(BUF_SEG * 16 + 0x200) >> 16, 0x93, 0, 0
	.quad	0, 0
