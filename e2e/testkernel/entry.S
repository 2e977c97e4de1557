/*
 * entry.S: Multiboot header and first instructions of the kvmboot test kernel.
 *
 * The loader enters _start in flat 32-bit protected mode, paging off,
 * interrupts off, with EAX = 0x2BADB002 and EBX = the Multiboot info.
 * The image may have been loaded (and relocated) anywhere, so until we know
 * better every address is computed PC-relatively: `lea (sym - 1b)(%ebp)`
 * with EBP = runtime address of label 1 assembles to an R_386_PC32
 * relocation, whose value does not change when the whole image moves, so a
 * loader must leave it alone (and does: it only adjusts R_386_32).
 */

#define MB_HEADER_MAGIC	0x1BADB002
#define MB_HEADER_FLAGS	0x00000003	/* bit 0: page-align modules, bit 1: memory info */

	.section .multiboot, "a"
	.balign 4
	.long	MB_HEADER_MAGIC
	.long	MB_HEADER_FLAGS
	.long	-(MB_HEADER_MAGIC + MB_HEADER_FLAGS)

	.text
	.globl	_start
	.type	_start, @function
_start:
	/*
	 * The Multiboot spec leaves ESP undefined; like most kernels we borrow
	 * 8 bytes of whatever stack the loader left, for EFLAGS and EIP. (If
	 * the loader's stack lies in our .bss, the check below catches it.)
	 */
	pushfl				/* EFLAGS as the loader left them */
	cli
	cld
	movl	%eax, %edi		/* Multiboot magic */
	movl	%ebx, %esi		/* Multiboot info */
	call	1f
1:	popl	%ebp			/* EBP = runtime address of 1b */
	popl	%ecx			/* ECX = EFLAGS at entry */

	leal	(kt_image_start - 1b)(%ebp), %ebx	/* EBX = runtime image base */

	/*
	 * The loader must zero .bss (it is in no file, only in p_memsz). Check
	 * it before anything uses it, our stack included. EDX = address of the
	 * first non-zero dword, or 0 when all of it is zero.
	 */
	leal	(__bss_start - 1b)(%ebp), %edx
	leal	(__bss_end - 1b)(%ebp), %eax
2:	cmpl	%eax, %edx
	jae	3f
	cmpl	$0, (%edx)
	jne	4f
	addl	$4, %edx
	jmp	2b
3:	xorl	%edx, %edx
4:
	/*
	 * Our own stack, at the end of .bss. `movl $kt_stack_top` is an
	 * R_386_32 relocation, right only if the loader applied it. If it
	 * disagrees with the PC-relative address, the loader did not relocate
	 * us (or not right): no C code can run, since every string and global
	 * is addressed absolutely. Say so on COM1 and stop with status 1.
	 */
	movl	$kt_stack_top, %eax
	leal	(kt_stack_top - 1b)(%ebp), %esp
	cmpl	%eax, %esp
	jne	not_relocated

	/* struct entry_state (kernel.c), built on the stack, last field first. */
	pushl	%esp			/* stack_top (the value before this push) */
	movl	$kt_link_base, %eax	/* absolute symbol: a loader must not relocate this */
	pushl	%eax			/* link_base */
	pushl	%ecx			/* eflags */
	pushl	%edx			/* bss_nonzero */
	leal	(_end - 1b)(%ebp), %eax
	subl	%ebx, %eax
	pushl	%eax			/* size = _end - kt_image_start */
	pushl	%ebx			/* base */
	pushl	%esi			/* info */
	pushl	%edi			/* magic */

	/*
	 * If the loader left garbage in .bss, that is reported (bss_nonzero);
	 * zero it now, all but the stack, so that the C code still works.
	 */
	leal	(__bss_start - 1b)(%ebp), %edi
	leal	(kt_stack - 1b)(%ebp), %ecx
	subl	%edi, %ecx
	shrl	$2, %ecx
	xorl	%eax, %eax
	rep stosl

	movl	%esp, %eax
	xorl	%ebp, %ebp		/* end of the frame-pointer chain */
	pushl	%eax			/* kmain(&entry_state) */
	call	kmain
	jmp	halt			/* kmain does not return */

not_relocated:
	leal	(not_relocated_msg - 1b)(%ebp), %esi
	call	early_puts
	movb	$1, %al
	outb	%al, $0xf4		/* debug exit: fail */
halt:	cli
	hlt
	jmp	halt
	.size	_start, . - _start

/*
 * early_puts: print the NUL-terminated string at ESI on COM1 (polled 16550,
 * 115200 8N1), using no absolute address. Clobbers EAX, EDX, ECX, ESI.
 */
	.type	early_puts, @function
early_puts:
	movw	$0x3f9, %dx		/* IER: no interrupts */
	xorb	%al, %al
	outb	%al, %dx
	movw	$0x3fb, %dx		/* LCR: DLAB on */
	movb	$0x80, %al
	outb	%al, %dx
	movw	$0x3f8, %dx		/* DLL = 1: 115200 baud */
	movb	$1, %al
	outb	%al, %dx
	movw	$0x3f9, %dx		/* DLM = 0 */
	xorb	%al, %al
	outb	%al, %dx
	movw	$0x3fb, %dx		/* LCR: 8N1, DLAB off */
	movb	$3, %al
	outb	%al, %dx
7:	movb	(%esi), %al
	testb	%al, %al
	jz	9f
	movw	$0x3fd, %dx		/* LSR: wait (bounded) for THRE */
	movl	$100000, %ecx
8:	inb	%dx, %al
	testb	$0x20, %al
	loopz	8b
	movb	(%esi), %al
	movw	$0x3f8, %dx		/* THR */
	outb	%al, %dx
	incl	%esi
	jmp	7b
9:	ret
	.size	early_puts, . - early_puts

/* Returns $kt_asm_canary: an absolute address taken in assembly (.rel.text). */
	.globl	kt_asm_canary_addr
	.type	kt_asm_canary_addr, @function
kt_asm_canary_addr:
	movl	$kt_asm_canary, %eax
	ret
	.size	kt_asm_canary_addr, . - kt_asm_canary_addr

	.data
	.balign	4
	.globl	kt_asm_canary
	.type	kt_asm_canary, @object
kt_asm_canary:
	.long	0x6b74a5a5
	.size	kt_asm_canary, 4

	.section .rodata
not_relocated_msg:
	.ascii	"\r\nkt: hello kvmboot-testkernel 1\r\n"
	.ascii	"kt: fail reloc: $kt_stack_top is not the address of the stack: "
	.ascii	"the loader did not apply the R_386_32 relocations\r\n"
	.asciz	"kt: result fail failures=1\r\n"

	/* The stack: linker.ld puts section .stack at the very end of .bss. */
	.section .stack, "aw", @nobits
	.balign	16
	.globl	kt_stack
kt_stack:
	.skip	16384
kt_stack_top:

	.section .note.GNU-stack, "", @progbits
