/*
 * ticks.S: does the machine hand over a PC's timer?
 *
 * A Multiboot kernel that drops to real mode itself (as DOS extenders and
 * some test suites do), then, with the BIOS's vectors and the 8259s as
 * the firmware left them:
 *
 *   - checks that IRQ 0-2 are unmasked and PIT channel 0 runs in mode 2
 *     or 3 (status read back);
 *   - hooks int 1Ch, reads the tick count (int 1Ah AH=00h) and the BDA's
 *     copy at 0040:006C (the same), and waits with sti; hlt until 37 ticks
 *     (2.03 s at 18.2 Hz) have passed;
 *   - checks the RTC moved at least 2 s meanwhile: the ticks are not
 *     faster than 18.2 Hz, the PIT's slowest rate (count 65536); nor much
 *     slower than it (20 s at most: a loaded host's QEMU drops ticks it
 *     could not deliver in time); and that int 1Ch ran once per tick
 *     (int 08h chains it);
 *   - sets the count 2 ticks before midnight (int 1Ah AH=01h) and waits
 *     for int 1Ah AH=00h to report the midnight flag once, with a count
 *     that wrapped to a few ticks, and not the second time.
 *
 * Every step prints a "pc: " line on COM1; the verdict goes to the
 * debug-exit port (0 pass, else the number of the failed check below).
 * e2e/conformance_pc_test.go boots it on every backend beside QEMU's -kernel
 * (SeaBIOS). Build: scripts/build-conformance-pc.sh.
 */
	.set MB_MAGIC,     0x1BADB002
	.set MB_FLAGS,     0
	.set RM_SEG,       0x0100      /* the real-mode part runs at 0100:0000 */
	.set RM_BASE,      RM_SEG << 4
	.set STACK_TOP,    0x4000      /* 0000:4000, below RM_BASE + 12 KiB */
	.set DEBUG_EXIT,   0xf4
	.set WAIT_TICKS,   37
	.set HLT_LIMIT,    2000        /* interrupts seen without the count moving on */
	.set TICKS_PER_DAY, 0x1800b0
	.set BDA_TICKS,    0x46c

	/* verdicts */
	.set V_MASKED,     1           /* IRQ 0, 1 or 2 masked */
	.set V_PIT_MODE,   2           /* PIT channel 0 not in mode 2 or 3 */
	.set V_BDA,        3           /* int 1Ah and 0040:006C disagree */
	.set V_NO_TICKS,   4           /* the count does not move */
	.set V_RATE,       5           /* not 18.2 Hz by the RTC */
	.set V_HOOK,       6           /* int 1Ch not once per tick */
	.set V_MIDNIGHT,   7           /* no midnight flag, or the count did not wrap */
	.set V_STICKY,     8           /* the midnight flag not cleared by reading it */
	.set V_RTC,        9           /* int 1Ah AH=02h failed */

	.section .multiboot, "a"
	.balign 4
	.long	MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.text
	.code32
	.globl	_start
_start:
	/* Flat 32-bit protected mode, paging off: copy the real-mode part
	 * below 1 MiB and leave protected mode through 16-bit segments. */
	cli
	cld
	movl	$rm_start, %esi
	movl	$RM_BASE, %edi
	movl	$rm_end - rm_start, %ecx
	rep movsb
	lgdtl	gdt_pointer
	ljmpl	$0x08, $RM_BASE + pm16 - rm_start

	.balign 8
gdt:
	.quad	0
	.quad	0x00009a000000ffff         /* 0x08: 16-bit code, base 0, 64 KiB */
	.quad	0x000092000000ffff         /* 0x10: 16-bit data, base 0, 64 KiB */
gdt_end:
gdt_pointer:
	.word	gdt_end - gdt - 1
	.long	gdt

/* ---- the real-mode part: every address below is an offset from rm_start,
 * which the code runs at as RM_SEG:0 ---------------------------------------- */
	.code16
rm_start:
pm16:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movl	%cr0, %eax
	andl	$0x7ffffffe, %eax          /* PE and PG off */
	movl	%eax, %cr0
	ljmp	$RM_SEG, $real - rm_start
real:
	xorw	%ax, %ax
	movw	%ax, %ss
	movw	$STACK_TOP, %sp
	movw	$RM_SEG, %ax
	movw	%ax, %ds
	movw	%ax, %es
	lidt	ivt_pointer - rm_start
	jmp	main

	.include "console.inc"

/* fail: print the reason after the call, write verdict AL, halt. */
fail:
	pushw	%ax
	call	say
	.asciz	"pc: verdict fail "
	popw	%ax
	popw	%si                        /* the reason follows the call */
	call	puts
	call	say
	.asciz	"\r\n"
	outb	%al, $DEBUG_EXIT
halt:
	cli
	hlt
	jmp	halt

/* ticks: EAX = the count from int 1Ah AH=00h, BL = its AL (midnight). */
ticks:
	pushw	%cx
	pushw	%dx
	movb	$0x00, %ah
	int	$0x1a
	movb	%al, %bl
	movzwl	%cx, %eax
	shll	$16, %eax
	movw	%dx, %ax
	popw	%dx
	popw	%cx
	ret

/* rtc_seconds: AX = seconds of the minute from int 1Ah AH=02h (BCD). */
rtc_seconds:
	pushw	%cx
	pushw	%dx
	movb	$0x02, %ah
	clc
	int	$0x1a
	jnc	1f
	movb	$V_RTC, %al
	call	fail
	.asciz	"int 1Ah AH=02h: CF=1"
1:	movb	%dh, %al
	movb	%al, %ah
	shrb	$4, %ah
	andb	$0x0f, %al
	aad
	popw	%dx
	popw	%cx
	ret

/* int 1Ch: count the calls. */
hook1c:
	incl	%cs:hook_count - rm_start
	iret

main:
	call	say
	.asciz	"pc: ticks: in real mode\r\n"

	/* 1: the masks */
	inb	$0x21, %al
	movb	%al, %bl
	inb	$0xa1, %al
	movb	%al, %bh
	call	say
	.asciz	"pc: pic-mask master="
	movb	%bl, %al
	call	hex8
	call	say
	.asciz	" slave="
	movb	%bh, %al
	call	hex8
	call	say
	.asciz	"\r\n"
	testb	$0x07, %bl
	jz	1f
	movb	$V_MASKED, %al
	call	fail
	.asciz	"IRQ 0, 1 or 2 masked at the master 8259"
1:
	/* 2: PIT channel 0's status: read-back command, status only */
	movb	$0xe2, %al
	outb	%al, $0x43
	inb	$0x40, %al
	movb	%al, %bl
	call	say
	.asciz	"pc: pit status="
	movb	%bl, %al
	call	hex8
	call	say
	.asciz	"\r\n"
	movb	%bl, %al
	shrb	$1, %al
	andb	$3, %al                    /* modes 2 and 3 (6 and 7 alias them) */
	cmpb	$2, %al
	jae	1f
	movb	$V_PIT_MODE, %al
	call	fail
	.asciz	"PIT channel 0 is not in mode 2 or 3"
1:
	/* int 1Ch hooked; the old vector kept */
	pushw	%ds
	xorw	%ax, %ax
	movw	%ax, %ds
	movl	0x1c * 4, %eax
	movl	%eax, %es:old1c - rm_start
	movw	$hook1c - rm_start, 0x1c * 4
	movw	$RM_SEG, 0x1c * 4 + 2
	popw	%ds

	/* 3: the count, by the service and in the BDA */
	call	ticks
	movl	%eax, start_ticks - rm_start
	pushw	%ds
	xorw	%dx, %dx
	movw	%dx, %ds
	cmpl	BDA_TICKS, %eax
	popw	%ds
	je	1f
	movb	$V_BDA, %al
	call	fail
	.asciz	"int 1Ah AH=00h and 0040:006C differ"
1:	call	rtc_seconds
	movw	%ax, start_sec - rm_start

	/* 4: sti; hlt until WAIT_TICKS ticks */
	movw	$HLT_LIMIT, %cx
wait:
	sti
	hlt
	cli
	call	ticks
	subl	start_ticks - rm_start, %eax
	cmpl	$WAIT_TICKS, %eax
	jae	2f
	testl	%eax, %eax
	jnz	wait                       /* ticking: wait for the rest */
	loop	wait
	movb	$V_NO_TICKS, %al
	call	fail
	.asciz	"sti; hlt: the tick count does not move"
2:	movl	%eax, waited - rm_start
	movl	%es:hook_count - rm_start, %edx
	call	rtc_seconds
	subw	start_sec - rm_start, %ax
	jae	3f
	addw	$60, %ax
3:	movw	%ax, %si
	call	say
	.asciz	"pc: waited ticks="
	movl	waited - rm_start, %eax
	call	hex32
	call	say
	.asciz	" int1c="
	movl	%edx, %eax
	call	hex32
	call	say
	.asciz	" rtc-seconds="
	movw	%si, %ax
	call	hex16
	call	say
	.asciz	"\r\n"
	/* 5: 37 ticks of 18.2 Hz are 2.03 s: the RTC moved 2 s or more */
	cmpw	$2, %si
	jb	4f
	cmpw	$20, %si
	jbe	5f
4:	movb	$V_RATE, %al
	call	fail
	.asciz	"the ticks do not run at 18.2 Hz by the RTC"
	/* 6: int 1Ch once per tick: the count and the hook agree */
5:	cmpl	waited - rm_start, %edx
	je	1f
	movb	$V_HOOK, %al
	call	fail
	.asciz	"int 1Ch did not run once per tick"
1:
	/* 7: midnight: the count set 2 ticks before it */
	movw	$TICKS_PER_DAY >> 16, %cx
	movw	$(TICKS_PER_DAY - 2) & 0xffff, %dx
	movb	$0x01, %ah
	int	$0x1a
	movw	$HLT_LIMIT, %cx
6:	sti
	hlt
	cli
	call	ticks
	testb	%bl, %bl
	jnz	7f
	loop	6b
	movb	$V_MIDNIGHT, %al
	call	fail
	.asciz	"int 1Ah AH=00h never reported midnight"
7:	movl	%eax, %edx
	call	say
	.asciz	"pc: midnight flag="
	movb	%bl, %al
	call	hex8
	call	say
	.asciz	" ticks="
	movl	%edx, %eax
	call	hex32
	call	say
	.asciz	"\r\n"
	cmpl	$18, %edx                  /* wrapped: about a second at most */
	jb	1f
	movb	$V_MIDNIGHT, %al
	call	fail
	.asciz	"the count did not wrap at midnight"
1:	call	ticks
	testb	%bl, %bl
	jz	1f
	movb	$V_STICKY, %al
	call	fail
	.asciz	"the midnight flag is still set after it was read"
1:
	/* The clock back where it was (the midnight test took a few ticks
	 * more), int 1Ch unhooked. */
	movl	start_ticks - rm_start, %eax
	addl	waited - rm_start, %eax
	addl	$3, %eax
	movl	%eax, %edx
	shrl	$16, %eax
	movw	%ax, %cx
	movb	$0x01, %ah
	int	$0x1a
	pushw	%ds
	xorw	%ax, %ax
	movw	%ax, %ds
	movl	%es:old1c - rm_start, %eax
	movl	%eax, 0x1c * 4
	popw	%ds
	call	say
	.asciz	"pc: verdict pass\r\n"
	xorb	%al, %al
	outb	%al, $DEBUG_EXIT
	jmp	halt

ivt_pointer:
	.word	0x3ff
	.long	0
	.balign 4
old1c:	.long	0
hook_count: .long 0
start_ticks: .long 0
waited:	.long	0
start_sec: .word 0
rm_end:
