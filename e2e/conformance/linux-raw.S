/*
 * linux-raw.S: an image of the Linux boot protocol that is not Linux, as
 * memory testers and network or disk loaders ship: a tiny real-mode setup
 * and a raw 32-bit part (no compressed kernel). Assembled once per protocol
 * version (scripts/build-conformance-loader.sh: --defsym PROTO=0x0203,
 * 0x0207, 0x020c).
 *
 * The setup code, entered at (X>>4)+0x20:0 with DS=ES=SS=X>>4 as the
 * 16-bit protocol says, checks what the loader wrote into its header
 * (type_of_loader, CAN_USE_HEAP and heap_end_ptr, cmd_line_ptr), prints the
 * command line, switches to protected mode itself and jumps to
 * code32_start with ESI = X (its header at the zero page's offsets), as
 * Linux's setup code does. The 32-bit part, position independent, checks
 * that it runs where code32_start says (aligned to kernel_alignment when
 * relocatable), that all of it was loaded up to its last byte (its length
 * is not a whole number of the paragraphs syssize counts), prints
 * "linux-raw: pass" on COM1 and writes 0 to the debug-exit port; any
 * failed check prints "linux-raw: FAIL <why>" and writes 1.
 *
 * From 2.05 the image is relocatable (kernel_alignment 1M); 2.10 adds
 * pref_address 1M and init_size 1M; from 2.08 payload_offset and
 * payload_length cover the whole 32-bit part, code that is no compressed
 * stream.
 */
	.ifndef PROTO
	.error "assemble with --defsym PROTO=0x02xx"
	.endif
	.set SETUP_SECTS, 2
	.set SETUP_SIZE,  (SETUP_SECTS + 1) * 512
	.set ALIGN,       0x100000
	.set INIT_SIZE,   0x100000
	.set STACK32,     0x9000	/* the 32-bit stack, X+0x9000: below every heap end */

	.code16
	.text
	.globl	_start
_start:
	/* The boot sector: nothing boots this image from a disk. */
1:	cli
	hlt
	jmp	1b

	.org	0x1f1
	.byte	SETUP_SECTS
	.word	0			/* root_flags */
	.if PROTO >= 0x0204
	.long	(pm_end - pm_start + 15) / 16	/* syssize: paragraphs, rounded up */
	.else
	.word	(pm_end - pm_start + 15) / 16
	.word	0
	.endif
	.word	0			/* ram_size */
	.word	0xffff			/* vid_mode */
	.word	0			/* root_dev */
	.word	0xaa55			/* boot_flag */
	/* 0x200, the entry: a jump past the header, whose length it gives. */
	.byte	0xeb, hdr_end - 0x202
	.ascii	"HdrS"
version:
	.word	PROTO
	.long	0			/* realmode_swtch */
	.word	0x1000			/* start_sys_seg */
	.word	0			/* kernel_version */
type_of_loader:
	.byte	0
loadflags:
	.byte	0x01			/* LOADED_HIGH */
	.word	0x8000			/* setup_move_size */
code32_start:
	.long	0x100000
	.long	0, 0, 0			/* ramdisk_image, ramdisk_size, bootsect_kludge */
heap_end_ptr:
	.word	0			/* 2.01 */
	.byte	0, 0			/* ext_loader_ver, ext_loader_type (2.02) */
cmd_line_ptr:
	.long	0			/* 2.02 */
	.long	0x7fffffff		/* initrd_addr_max (2.03) */
	.if PROTO >= 0x0205
	.long	ALIGN			/* kernel_alignment */
	.byte	1			/* relocatable_kernel */
	.byte	0			/* min_alignment (2.10) */
	.word	0			/* xloadflags (2.12) */
	.endif
	.if PROTO >= 0x0206
	.long	255			/* cmdline_size */
	.endif
	.if PROTO >= 0x0207
	.long	0			/* hardware_subarch */
	.quad	0			/* hardware_subarch_data */
	.endif
	.if PROTO >= 0x0208
	.long	0			/* payload_offset */
	.long	pm_end - pm_start	/* payload_length: raw code, not compressed */
	.endif
	.if PROTO >= 0x0209
	.quad	0			/* setup_data */
	.endif
	.if PROTO >= 0x020a
	.quad	0x100000		/* pref_address */
	.long	INIT_SIZE		/* init_size */
	.endif
	.if PROTO >= 0x020b
	.long	0			/* handover_offset */
	.endif
hdr_end:

/* The setup code: CS = X>>4 + 0x20, so jumps and calls are relative and
 * data is reached through DS = X>>4 (labels are offsets from X). */
setup:
	cli
	cld
	call	say16
	.asciz	"linux-raw: setup code, protocol "
	movw	version, %ax
	call	hex16
	call	say16
	.asciz	"\r\n"

	cmpl	$0x50555453, setup_tail	/* "STUP": all setup sectors loaded */
	je	1f
	call	fail16
	.asciz	"the setup sectors are not all there"
1:	cmpb	$0, type_of_loader
	jne	1f
	call	fail16
	.asciz	"type_of_loader not written"
1:	testb	$0x80, loadflags
	jz	1f
	cmpw	$0, heap_end_ptr
	jne	2f
1:	call	fail16
	.asciz	"no CAN_USE_HEAP or heap_end_ptr"
2:	movl	cmd_line_ptr, %eax
	testl	%eax, %eax
	jnz	1f
	call	fail16
	.asciz	"cmd_line_ptr not written"
1:	call	say16
	.asciz	"linux-raw: command line \""
	movl	%eax, %ebx
	shrl	$4, %ebx
	movw	%bx, %es
	andw	$15, %ax
	movw	%ax, %si
	movw	$256, %cx
1:	movb	%es:(%si), %al
	testb	%al, %al
	jz	2f
	call	putc16
	incw	%si
	loop	1b
2:	call	say16
	.asciz	"\"\r\n"

	/* Protected mode, as Linux's setup enters it: a GDT with flat
	 * 0x10 code and 0x18 data, then a far jump to our 32-bit stub. */
	xorl	%ebx, %ebx
	movw	%ds, %bx
	shll	$4, %ebx		/* EBX = X */
	leal	gdt(%ebx), %eax
	movl	%eax, gdt_base
	leal	in_pm32(%ebx), %eax
	movl	%eax, pm_entry
	lgdtl	gdt_desc
	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0
	ljmpl	*pm_entry

	.code32
in_pm32:
	movw	$0x18, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	leal	STACK32(%ebx), %esp
	movl	%ebx, %esi		/* boot_params: our header at its offsets */
	xorl	%ebp, %ebp
	xorl	%edi, %edi
	jmp	*0x214(%esi)		/* code32_start */
	.code16

/* putc16: AL on COM1; keeps every register. */
putc16:
	pushw	%ax
	pushw	%dx
	movb	%al, %ah
	movw	$0x3fd, %dx
1:	inb	%dx, %al
	testb	$0x20, %al
	jz	1b
	movb	%ah, %al
	movw	$0x3f8, %dx
	outb	%al, %dx
	popw	%dx
	popw	%ax
	ret

/* say16: print the string after the call (in CS); keeps every register. */
say16:
	pushw	%bp
	movw	%sp, %bp
	pushw	%si
	pushw	%ax
	movw	2(%bp), %si
1:	movb	%cs:(%si), %al
	incw	%si
	testb	%al, %al
	jz	2f
	call	putc16
	jmp	1b
2:	movw	%si, 2(%bp)
	popw	%ax
	popw	%si
	popw	%bp
	ret

/* hex16: AX as four hex digits. */
hex16:
	pushw	%ax
	pushw	%cx
	pushw	%dx
	movw	%ax, %dx
	movw	$4, %cx
1:	rolw	$4, %dx
	movb	%dl, %al
	andb	$0x0f, %al
	addb	$'0', %al
	cmpb	$'9', %al
	jbe	2f
	addb	$'a' - '0' - 10, %al
2:	call	putc16
	loop	1b
	popw	%dx
	popw	%cx
	popw	%ax
	ret

/* fail16: print "linux-raw: FAIL " and the string after the call, exit 1. */
fail16:
	call	say16
	.asciz	"linux-raw: FAIL "
	popw	%si			/* the caller's string, in CS */
1:	movb	%cs:(%si), %al
	incw	%si
	testb	%al, %al
	jz	2f
	call	putc16
	jmp	1b
2:	call	say16
	.asciz	"\r\n"
	movb	$1, %al
	outb	%al, $0xf4
1:	cli
	hlt
	jmp	1b

	.balign	8
gdt:
	.quad	0
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x10: flat 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x18: flat data */
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
gdt_base:
	.long	0
pm_entry:
	.long	0
	.word	0x10

	.org	SETUP_SIZE - 4
setup_tail:
	.ascii	"STUP"

/* The 32-bit part: loaded at code32_start, or elsewhere when relocatable;
 * entered with ESI = the setup's header, flat segments, a stack. */
	.code32
pm_start:
	cli
	cld
	call	1f
1:	popl	%ebp
	subl	$(1b - pm_start), %ebp	/* EBP = where we run */
	call	say32
	.asciz	"linux-raw: 32-bit part, protocol "
	movzwl	0x206(%esi), %eax
	call	hex32
	call	say32
	.asciz	", at "
	movl	%ebp, %eax
	call	hex32
	call	say32
	.asciz	"\r\n"

	cmpl	0x214(%esi), %ebp
	je	1f
	call	fail32
	.asciz	"code32_start does not say where the part is"
1:
	.if PROTO >= 0x0205
	movl	0x230(%esi), %ecx	/* kernel_alignment */
	decl	%ecx
	testl	%ecx, %ebp
	jz	1f
	call	fail32
	.asciz	"not aligned to kernel_alignment"
1:
	.endif
	/* Every byte loaded: the pattern, and the tail that ends the file
	 * in the middle of a paragraph. */
	leal	(pattern - pm_start)(%ebp), %edi
	xorl	%ecx, %ecx
1:	movl	%ecx, %eax
	imull	$7, %eax
	addl	$3, %eax
	cmpb	%al, (%edi, %ecx)
	jne	2f
	incl	%ecx
	cmpl	$256, %ecx
	jb	1b
	cmpl	$0x4c494154, (pm_tail - pm_start)(%ebp)	/* "TAIL" */
	jne	2f
	cmpb	$'!', (pm_tail + 4 - pm_start)(%ebp)
	je	3f
2:	call	fail32
	.asciz	"the 32-bit part is not all there"
3:	call	say32
	.asciz	"linux-raw: pass\r\n"
	movb	$0, %al
	jmp	exit32

/* fail32: print "linux-raw: FAIL " and the string after the call, exit 1. */
fail32:
	call	say32
	.asciz	"linux-raw: FAIL "
	popl	%esi
	call	puts32
	call	say32
	.asciz	"\r\n"
	movb	$1, %al
	jmp	exit32

	.include "print32.inc"

pattern:
	.set	i, 0
	.rept	256
	.byte	(i * 7 + 3) & 0xff
	.set	i, i + 1
	.endr
	.balign	16
	.fill	9, 1, 0
pm_tail:
	.ascii	"TAIL!"			/* the part is 16n+14 bytes long */
pm_end:
