/*
 * Shared by ap.S and kernel.c: the start-up code an application processor
 * runs from kt.smp's INIT-SIPI-SIPI. kernel.c copies kt_ap_trampoline to a
 * free page below 1 MiB and fills in its GDTR and far pointer, at these
 * offsets.
 */
#define AP_GDTR		0x30	/* 6 bytes: limit, base of kt_ap_gdt */
#define AP_FAR		0x38	/* 6 bytes: offset of kt_ap_entry32, AP_CODE_SEL */
#define AP_CODE_SEL	0x08	/* kt_ap_gdt: flat 32-bit code */
#define AP_DATA_SEL	0x10	/* kt_ap_gdt: flat data */
#define KT_MAX_CPUS	64
#define KT_MAX_APS	(KT_MAX_CPUS - 1)
#define AP_STACK_SHIFT	10	/* 1 KiB of stack per application processor */
