/*
 * kvmboot firmware image: the guest-side boot stub.
 *
 * A 64 KiB image mapped like a PC BIOS: at 0xF0000 and just below 4 GiB.
 * The CPU starts at the reset vector (F000:FFF0, the image's last 16 bytes),
 * which jumps to `start` in real mode.  The stub then does what a bootloader
 * does before it hands over to a 32-bit kernel:
 *
 *   real mode:  segments and stack, A20 on (port 0x92), GDT and TSS copied to
 *               RAM, CR0.PE, far jump to 32-bit code;
 *   32-bit:     flat segments, TR, an empty IDT (an early fault is a clean
 *               triple fault, not a jump through the real-mode IVT), the
 *               local APIC in virtual-wire mode, optional XXH32 check of
 *               every placed piece;
 *   real mode again, when the plan asks: far-call a real-mode part (as
 *               Gujin's kernels carried one) and/or far-jump to a real-mode
 *               entry (the Linux 16-bit protocol's setup code);
 *   32-bit:     the registers the boot protocol asks for, jump to the
 *               kernel's entry.
 *
 * Everything it needs comes from the parameter block at PARAMS (see
 * abi.go, which must agree with the offsets below).  The same bytes run
 * under our KVM machine, under QEMU with -bios, and on a PC.
 *
 * Build: scripts/build-stubs.sh (make stubs).  The image is linked at 0 and
 * runs with CS base 0xF0000 in real mode; 32-bit code runs from the same
 * bytes at linear ROM_BASE+offset, so 32-bit absolute references add ROM_BASE.
 */

	.set ROM_BASE,    0xF0000
	.set GDT_ADDR,    0x6000      /* GDT copied here: the CPU writes the TSS busy bit */
	.set TSS_ADDR,    0x6080      /* 104-byte 32-bit TSS, zeroed */
	.set TSS_LEN,     104
	.set STACK_TOP,   0x7000      /* stack grows down from the parameter block */
	.set PARAMS,      0x7000

	/* parameter block offsets (abi.go) */
	.set P_MAGIC,     0x00
	.set P_VERSION,   0x04
	.set P_EIP,       0x08
	.set P_EAX,       0x0c
	.set P_EBX,       0x10
	.set P_ESI,       0x14
	.set P_ESP,       0x18
	.set P_FLAGS,     0x1c
	.set P_STATUS,    0x20
	.set P_DETAIL,    0x24
	.set P_GOT,       0x28
	.set P_NCHECKS,   0x2c
	.set P_RM_CALL,   0x30        /* seg:off far-called in real mode, 0 = none */
	.set P_RM_ENTRY,  0x34        /* seg:off jumped to in real mode, 0 = none */
	.set P_RM_SEG,    0x38        /* u16: DS=ES=FS=GS=SS for P_RM_ENTRY */
	.set P_RM_SP,     0x3a        /* u16: SP for P_RM_ENTRY */
	.set P_CHECKS,    0x40
	.set PARAM_MAGIC, 0x424d564b  /* "KVMB" */
	.set PARAM_VERSION, 2
	.set FLAG_VERIFY, 1
	.set MAX_CHECKS,  336

	/* status values the stub leaves in P_STATUS for the host */
	.set ST_STARTED,  1
	.set ST_JUMPED,   2
	.set ST_BADSUM,   3
	.set ST_NOPARAMS, 4

	.set DEBUG_EXIT,  0xf4
	.set EXIT_STUB_FAILED, 125    /* outside the 0..123 a guest reports */
	.set COM1,        0x3f8

	/* local APIC (its base comes from IA32_APIC_BASE) */
	.set MSR_APIC_BASE, 0x1b
	.set APIC_SVR,    0xf0
	.set APIC_LINT0,  0x350
	.set APIC_LINT1,  0x360
	.set APIC_SW_ENABLE, 0x100
	.set LVT_EXTINT,  0x8700      /* ExtINT, level */
	.set LVT_NMI,     0x8400      /* NMI, level */

	.set SEL_CODE,    0x10
	.set SEL_DATA,    0x18
	.set SEL_TSS,     0x20
	.set SEL_CODE16,  0x28        /* 16-bit code, base ROM_BASE: the way back to real mode */
	.set SEL_DATA16,  0x30        /* 16-bit data, base 0, 64 KiB limit */

	.text
	.code16
	.globl code16_start
code16_start:
start:
	cli
	cld
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$STACK_TOP, %sp

	/* The BIOS (bios.S): vectors, BDA, EBDA, from the loader's tables. */
	call	bios_init

	/* A20 through the fast gate; bit 0 would reset the machine. */
	inb	$0x92, %al
	orb	$0x02, %al
	andb	$0xfe, %al
	outb	%al, $0x92

	/* GDT template from ROM to RAM. */
	movw	$gdt_template, %si
	movw	$GDT_ADDR, %di
	movw	$(gdt_template_end - gdt_template) / 2, %cx
	rep movsw %cs:(%si), %es:(%di)

	lgdtl	%cs:gdt_pointer
	lidtl	%cs:idt_pointer_empty

	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$SEL_CODE, $(ROM_BASE + start32)

/* Entered from 32-bit code with CS = SEL_CODE16: leave protected mode. */
to_real16:
	movw	$SEL_DATA16, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movl	%cr0, %eax
	andl	$~1, %eax
	movl	%eax, %cr0
	ljmp	$0xf000, $real_again
real_again:
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movw	$STACK_TOP, %sp
	lidtl	%cs:ivt_pointer

	cmpl	$0, PARAMS + P_RM_CALL
	je	1f
	lcallw	*PARAMS + P_RM_CALL
	cli
	cld
	xorw	%ax, %ax                /* the part may have left any segments */
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$STACK_TOP, %sp
1:	cmpl	$0, PARAMS + P_RM_ENTRY
	je	2f
	movw	PARAMS + P_RM_SEG, %bx
	movw	PARAMS + P_RM_SP, %cx
	movl	PARAMS + P_RM_ENTRY, %edx
	movl	$ST_JUMPED, PARAMS + P_STATUS
	movw	%bx, %ds
	movw	%bx, %es
	movw	%bx, %fs
	movw	%bx, %gs
	movw	%bx, %ss
	movw	%cx, %sp
	xorl	%eax, %eax
	xorl	%ebx, %ebx
	xorl	%ecx, %ecx
	xorl	%esi, %esi
	xorl	%edi, %edi
	xorl	%ebp, %ebp
	pushl	%edx                    /* seg:off, as lret pops it */
	xorl	%edx, %edx
	lretw

	/* No real-mode entry: on to the 32-bit one. GDTR survived. */
2:	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	$SEL_CODE, $(ROM_BASE + reenter32)
	.globl code16_end
code16_end:

	.code32
	.globl code32_start
code32_start:
start32:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	movl	$STACK_TOP, %esp

	/* A zeroed TSS: on a reset it may hold old bytes. */
	xorl	%eax, %eax
	movl	$TSS_ADDR, %edi
	movl	$TSS_LEN / 4, %ecx
	rep stosl
	movw	$SEL_TSS, %ax
	ltr	%ax

	/* The local APIC in virtual-wire mode, as a PC BIOS leaves it: the
	 * 8259's interrupts reach the CPU through LINT0 (ExtINT), NMIs through
	 * LINT1.  From reset both are masked, and real-mode code that turns
	 * interrupts on (Linux's setup code, a guest's sti; hlt) would never
	 * see the timer. */
	movl	$1, %eax
	cpuid
	btl	$9, %edx                /* an APIC */
	jnc	1f
	movl	$MSR_APIC_BASE, %ecx
	rdmsr
	btl	$11, %eax               /* globally enabled */
	jnc	1f
	andl	$0xfffff000, %eax
	orl	$APIC_SW_ENABLE, APIC_SVR(%eax)
	movl	$LVT_EXTINT, APIC_LINT0(%eax)
	movl	$LVT_NMI, APIC_LINT1(%eax)
1:
	cmpl	$PARAM_MAGIC, PARAMS + P_MAGIC
	jne	no_params
	cmpl	$PARAM_VERSION, PARAMS + P_VERSION
	jne	no_params
	movl	$ST_STARTED, PARAMS + P_STATUS

	testl	$FLAG_VERIFY, PARAMS + P_FLAGS
	jz	1f
	call	verify
1:	movl	PARAMS + P_RM_CALL, %eax
	orl	PARAMS + P_RM_ENTRY, %eax
	jz	enter
	/* Back to real mode through a 16-bit protected-mode segment. */
	ljmp	$SEL_CODE16, $to_real16

	/* 32-bit again after the real-mode work: TR is loaded already. */
reenter32:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	lidt	ROM_BASE + idt_pointer_empty

enter:
	movl	PARAMS + P_ESP, %esp
	testl	%esp, %esp
	jnz	1f
	movl	$STACK_TOP, %esp
1:	movl	$ST_JUMPED, PARAMS + P_STATUS
	movl	PARAMS + P_EAX, %eax
	movl	PARAMS + P_EBX, %ebx
	movl	PARAMS + P_ESI, %esi
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	xorl	%edi, %edi
	xorl	%ebp, %ebp
	jmp	*PARAMS + P_EIP

no_params:
	movl	$ST_NOPARAMS, PARAMS + P_STATUS
	movl	$(ROM_BASE + msg_noparams), %esi
	jmp	fail

/*
 * verify: XXH32 (seed 0) of each {addr, len, sum} entry.  A word-wise
 * hash rather than a CRC: under QEMU's TCG the crc32 instruction is a
 * helper that works bit by bit (about 140 ms for 16 MiB), where XXH32's
 * multiplies and rotates are a few host instructions each; it needs no
 * SSE4.2 either (an emulating KVM lacks crc32).  Every one-word change
 * changes the sum (each step is a bijection of the lane); other damage
 * passes once in about 2^32.
 */
	.set XXH_P1, 0x9E3779B1
	.set XXH_P2, 0x85EBCA77
	.set XXH_P3, 0xC2B2AE3D
	.set XXH_P4, 0x27D4EB2F
	.set XXH_P5, 0x165667B1
verify:
	movl	PARAMS + P_NCHECKS, %ebx
	cmpl	$MAX_CHECKS, %ebx
	ja	no_params
	movl	$PARAMS + P_CHECKS, %edi
	xorl	%edx, %edx              /* edx = entry index */
verify_next:
	cmpl	PARAMS + P_NCHECKS, %edx
	jae	verify_done
	pushl	%edx
	pushl	%edi
	movl	0(%edi), %esi
	movl	4(%edi), %ecx
	call	xxh32
	popl	%edi
	popl	%edx
	cmpl	8(%edi), %eax
	jne	bad_sum
	addl	$12, %edi
	incl	%edx
	jmp	verify_next
verify_done:
	ret

bad_sum:
	movl	$ST_BADSUM, PARAMS + P_STATUS
	movl	%edx, PARAMS + P_DETAIL
	movl	%eax, PARAMS + P_GOT
	movl	$(ROM_BASE + msg_badsum), %esi
	jmp	fail

/* xxh32: eax = XXH32 (seed 0) of the ecx bytes at esi.  Clobbers ebx,
 * ecx, edx, esi, edi, ebp. */
xxh32:
	pushl	%ecx                    /* the length, added in before the tail */
	leal	(%esi,%ecx), %edi       /* edi = end */
	movl	$XXH_P5, %eax
	cmpl	$16, %ecx
	jb	xxh_tail
	movl	$(XXH_P1 + XXH_P2) & 0xffffffff, %ebx   /* the four lanes */
	movl	$XXH_P2, %ecx
	xorl	%edx, %edx
	movl	$(0 - XXH_P1) & 0xffffffff, %ebp
	subl	$16, %edi               /* stripes of 16 bytes while esi <= end-16 */
xxh_stripe:
	imull	$XXH_P2, 0(%esi), %eax
	addl	%eax, %ebx
	roll	$13, %ebx
	imull	$XXH_P1, %ebx, %ebx
	imull	$XXH_P2, 4(%esi), %eax
	addl	%eax, %ecx
	roll	$13, %ecx
	imull	$XXH_P1, %ecx, %ecx
	imull	$XXH_P2, 8(%esi), %eax
	addl	%eax, %edx
	roll	$13, %edx
	imull	$XXH_P1, %edx, %edx
	imull	$XXH_P2, 12(%esi), %eax
	addl	%eax, %ebp
	roll	$13, %ebp
	imull	$XXH_P1, %ebp, %ebp
	addl	$16, %esi
	cmpl	%edi, %esi
	jbe	xxh_stripe
	addl	$16, %edi
	roll	$1, %ebx
	roll	$7, %ecx
	roll	$12, %edx
	roll	$18, %ebp
	leal	(%ebx,%ecx), %eax
	addl	%edx, %eax
	addl	%ebp, %eax
xxh_tail:
	popl	%ecx
	addl	%ecx, %eax
xxh_words:
	leal	4(%esi), %ecx
	cmpl	%edi, %ecx
	ja	xxh_bytes
	imull	$XXH_P3, (%esi), %ecx
	addl	%ecx, %eax
	roll	$17, %eax
	imull	$XXH_P4, %eax, %eax
	addl	$4, %esi
	jmp	xxh_words
xxh_bytes:
	cmpl	%edi, %esi
	jae	xxh_avalanche
	movzbl	(%esi), %ecx
	imull	$XXH_P5, %ecx, %ecx
	addl	%ecx, %eax
	roll	$11, %eax
	imull	$XXH_P1, %eax, %eax
	incl	%esi
	jmp	xxh_bytes
xxh_avalanche:
	movl	%eax, %ecx
	shrl	$15, %ecx
	xorl	%ecx, %eax
	imull	$XXH_P2, %eax, %eax
	movl	%eax, %ecx
	shrl	$13, %ecx
	xorl	%ecx, %eax
	imull	$XXH_P3, %eax, %eax
	movl	%eax, %ecx
	shrl	$16, %ecx
	xorl	%ecx, %eax
	ret

/* fail: print the NUL-terminated message at %esi on COM1, report 125 on the
 * debug-exit port, and stop.  The host reads P_STATUS for the details. */
fail:
	movw	$COM1 + 5, %dx
6:	inb	%dx, %al
	testb	$0x20, %al
	jz	6b
	movb	(%esi), %al
	testb	%al, %al
	jz	7f
	movw	$COM1, %dx
	outb	%al, %dx
	incl	%esi
	jmp	fail
7:	movb	$EXIT_STUB_FAILED, %al
	outb	%al, $DEBUG_EXIT
8:	cli
	hlt
	jmp	8b
	.globl code32_end
code32_end:

/* ---- data ---- */
	.balign 8
gdt_template:
	.quad	0                       /* null */
	.quad	0                       /* unused: Linux's __BOOT_CS is 0x10 */
	.quad	0x00cf9b000000ffff      /* 0x10: flat 4 GiB code, exec/read, accessed */
	.quad	0x00cf93000000ffff      /* 0x18: flat 4 GiB data, read/write, accessed */
	/* 0x20: 32-bit available TSS at TSS_ADDR, limit TSS_LEN-1 */
	.word	TSS_LEN - 1
	.word	TSS_ADDR & 0xffff
	.byte	(TSS_ADDR >> 16) & 0xff
	.byte	0x89
	.byte	0x00
	.byte	(TSS_ADDR >> 24) & 0xff
	.quad	0x00009b0f0000ffff      /* 0x28: 16-bit code, base 0xF0000, 64 KiB */
	.quad	0x000093000000ffff      /* 0x30: 16-bit data, base 0, 64 KiB */
gdt_template_end:

gdt_pointer:
	.word	gdt_template_end - gdt_template - 1
	.long	GDT_ADDR
idt_pointer_empty:
	.word	0
	.long	0
ivt_pointer:
	.word	0x3ff
	.long	0

msg_noparams:
	.asciz	"kvmboot stub: no valid parameter block at 0x7000\r\n"
msg_badsum:
	.asciz	"kvmboot stub: checksum mismatch, not jumping to the kernel\r\n"

/*
 * Layout table at a fixed offset, read by the Go tests: where the 16-bit and
 * 32-bit code lies, so every code byte can be disassembled in its mode.
 */
	.section .layout, "a"
	.ascii	"KVMBLAYT"
	.word	code16_start, code16_end
	.word	code32_start, code32_end
	.word	reset_vector, reset_vector_end

	.section .reset, "ax"
	.code16
reset_vector:
	ljmp	$0xf000, $start
reset_vector_end:
