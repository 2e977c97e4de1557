/*
 * The test kernel's real-mode part (realmode.S) and its 32-bit side
 * (kernel.c) share this layout. A loader that runs kvmboot's REALMODE note
 * descriptor places the part below 1 MiB, far-calls it at offset 0 with
 * the BIOS up, and stores the part's physical address in kt_realmode_addr.
 */
#define RM_RESULTS	0x100		/* offset of the results in the part */
#define RM_MAGIC	0x30383245	/* "E820" */
#define RM_MAX		32		/* entries the part keeps */
#define RM_ENTRY_SIZE	20
#define RM_SIZE		(RM_RESULTS + 8 + RM_MAX * RM_ENTRY_SIZE)
