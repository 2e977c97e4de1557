/*
 * The messages between kvmboot (machine/qemu) and its TCG plugin, over the
 * stream socket kvmboot hands QEMU (plugin argument fd=N). Each message is
 * a header {u32 type, u32 length of the payload} and its payload; numbers
 * are little-endian, u64 fields 8-byte aligned in the payload. A message
 * marked "reply" waits for kvmboot's u32 answer. protocol.go holds the same
 * values (TestProtocolMatchesC compares them).
 *
 * A block (BLOCK) is a translated block as the payloads carry it:
 * {u64 vaddr, u32 instructions, u32 code bytes, u8 length of each
 * instruction, the code bytes}.
 */
#ifndef KVMBOOT_PROTOCOL_H
#define KVMBOOT_PROTOCOL_H

#define KB_VERSION 2

/* kvmboot -> plugin, first: {u32 version, u32 flags, u64 RAM size, u32
 * RAM file's device major, minor, u64 its inode, u32 ranges, u32 0, then
 * each range {u64 start, u64 end, u32 class, u32 0}}, sorted, not
 * overlapping. */
#define KB_MSG_CONFIG 1
/* plugin -> kvmboot: */
#define KB_MSG_HELLO 2   /* installed: {u32 version, u32 0} */
#define KB_MSG_START 3   /* the guest's first block, before watching begins; reply */
#define KB_MSG_FAULT 4   /* an access about to happen: {u64 phys, u32 write, u32 instructions of the running block, u64 its serial, u64 its address, u32 the vCPU that runs it, u32 0}; reply, or none to stop there */
#define KB_MSG_DONE 5    /* the access FAULT let through happened: {u64 phys}; reply */
#define KB_MSG_WRITTEN 6 /* a write to faulty RAM happened: {u64 phys, u64 window, u32 window bytes, u32 0, the window's bytes before the write}; reply */
#define KB_MSG_BLOCK 7   /* a block is being translated (tracing): {u32 id, u32 block bytes, BLOCK}; reply */
#define KB_MSG_EXEC 8    /* a traced instruction is about to run on vCPU 0: {u32 block id, u32 index} */

/* CONFIG flags. */
#define KB_CONFIG_BLOCKS 1 /* follow which block runs, for FAULT */
#define KB_CONFIG_TRACE 2  /* send BLOCK for each translation */

/* Range classes. */
#define KB_CLASS_BAD 1    /* declared bad: FAULT before, DONE after each access */
#define KB_CLASS_FAULTY 2 /* faulty, reads see memory: WRITTEN after each write */
#define KB_CLASS_FLIP 3   /* faulty, reads change: FAULT and DONE around reads, WRITTEN after writes */

/* BLOCK's reply bits. */
#define KB_TRACE_BLOCK 1 /* instrument this block's instructions */
#define KB_TRACE_DONE 2  /* tracing is over: send no more BLOCK or EXEC */

/* The most a window of WRITTEN holds: two 64-byte lines. */
#define KB_WINDOW 128

#endif
