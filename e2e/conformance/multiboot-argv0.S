/*
 * multiboot-argv0.S: a Multiboot kernel that reads argv[0], as test
 * programs built for GRUB and QEMU's -kernel do: both start the command
 * line with the kernel's path. It prints the command line and its first
 * word on COM1 and passes (writes 0 to the debug-exit port) when that word
 * is this program's path, a name ending in "multiboot-argv0.elf"; else it
 * prints "multiboot-argv0: FAIL <why>" and writes 1.
 */
	.set MB_MAGIC, 0x1BADB002
	.set MB_FLAGS, 0x00000002	/* memory information */

	.section .multiboot, "a"
	.balign	4
	.long	MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.text
	.globl	_start
_start:
	cli
	cld
	movl	$stack_top, %esp
	cmpl	$0x2BADB002, %eax
	je	1f
	call	fail32
	.asciz	"no Multiboot magic in EAX"
1:	testl	$4, (%ebx)		/* flags: cmdline */
	jnz	1f
	call	fail32
	.asciz	"no command line in the Multiboot information"
1:	movl	16(%ebx), %esi
	call	say32
	.asciz	"multiboot-argv0: command line \""
	pushl	%esi
	call	puts32
	popl	%esi
	call	say32
	.asciz	"\"\r\n"

	/* argv[0]: the first word, ESI to EDI. */
1:	cmpb	$' ', (%esi)
	jne	2f
	incl	%esi
	jmp	1b
2:	movl	%esi, %edi
3:	movb	(%edi), %al
	testb	%al, %al
	jz	4f
	cmpb	$' ', %al
	je	4f
	incl	%edi
	jmp	3b
4:	movb	(%edi), %dl		/* keep the byte after the word */
	movb	$0, (%edi)
	call	say32
	.asciz	"multiboot-argv0: argv[0] \""
	pushl	%esi
	call	puts32
	popl	%esi
	call	say32
	.asciz	"\"\r\n"
	movb	%dl, (%edi)

	/* It names this file: "multiboot-argv0.elf", alone or after a '/'. */
	movl	%edi, %ecx
	subl	%esi, %ecx		/* ECX = the word's length */
	cmpl	$name_len, %ecx
	jb	9f
	pushl	%esi
	leal	-name_len(%edi), %esi
	movl	$name, %edi
	movl	$name_len, %ecx
	repe	cmpsb
	popl	%edi			/* EDI = the word's start */
	jne	9f
	leal	-name_len(%esi), %eax	/* where the name starts in the word */
	cmpl	%edi, %eax
	je	8f
	cmpb	$'/', -1(%eax)
	jne	9f
8:	call	say32
	.asciz	"multiboot-argv0: pass\r\n"
	movb	$0, %al
	jmp	exit32
9:	call	fail32
	.asciz	"argv[0] is not this program's path"

/* fail32: print "multiboot-argv0: FAIL " and the string after the call, exit 1. */
fail32:
	call	say32
	.asciz	"multiboot-argv0: FAIL "
	popl	%esi
	call	puts32
	call	say32
	.asciz	"\r\n"
	movb	$1, %al
	jmp	exit32

	.include "print32.inc"

name:
	.ascii	"multiboot-argv0.elf"
	.set	name_len, . - name

	.bss
	.balign	16
	.skip	4096
stack_top:
