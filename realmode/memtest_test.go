package realmode

import (
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestMemtestDecodes disassembles every code byte of the memtest guest as
// 32-bit code: the jump over the header, then the code up to its variables.
func TestMemtestDecodes(t *testing.T) {
	start, end, err := MemtestLayout(Memtest)
	if err != nil {
		t.Fatal(err)
	}
	if len(Memtest) > MemtestTable-MemtestAddr {
		t.Fatalf("memtest guest is %d bytes: it must fit below its table at %#x", len(Memtest), MemtestTable)
	}
	inst, err := x86asm.Decode(Memtest, 32)
	if err != nil || inst.Op != x86asm.JMP {
		t.Fatalf("first instruction %v, %v: want the jump over the header", inst, err)
	}
	if target := inst.Len + int(inst.Args[0].(x86asm.Rel)); target != start {
		t.Fatalf("the first jump goes to %#x, the header says code starts at %#x", target, start)
	}
	n := decodeAll(t, "memtest", Memtest, start, end, 32)
	t.Logf("memtest: %d instructions in %#x-%#x, %d bytes in all", n, start, end, len(Memtest))
}

// TestMemtestMatchesSource: the Go constants and memtest.S agree.
func TestMemtestMatchesSource(t *testing.T) {
	src := checkSourceConstants(t, "memtest.S", map[string]int{
		"MEMTEST_ADDR": MemtestAddr, "TABLE_MAGIC": MemtestMagic, "TABLE_VERSION": MemtestVersion,
		"T_MAGIC": memtestTMagic, "T_VERSION": memtestTVersion, "T_MODE": memtestTMode, "T_SEED": memtestTSeed,
		"T_NRANGES": memtestTNRanges, "T_RANGES": memtestTRanges, "MAX_RANGES": MemtestMaxRanges,
		"MODE_QUICK": MemtestQuick, "MODE_THOROUGH": MemtestThorough, "SEED_MUL": MemtestSeedMul,
		"EXIT_OK": MemtestExitOK, "EXIT_BAD_TABLE": MemtestExitBadTable, "EXIT_NO_UART": MemtestExitNoUART,
		"EXIT_UART_STUCK": MemtestExitUARTStuck,
		"TEST_QUICK_ADDR": MemtestTestQuickAddr, "TEST_QUICK_INV": MemtestTestQuickInv, "TEST_ADDR": MemtestTestAddr,
		"TEST_INV": MemtestTestInv, "TEST_WALK1": MemtestTestWalk1, "TEST_WALK0": MemtestTestWalk0,
		"TEST_WIDE_UP": MemtestTestWideUp, "TEST_WIDE_DOWN": MemtestTestWideDown,
	})
	if want := ".irp off, 0, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4092"; !strings.Contains(src, want) {
		t.Errorf("memtest.S samples other words than MemtestSampleOffsets %v", MemtestSampleOffsets)
	}
}

func TestEncodeMemtestTable(t *testing.T) {
	b, err := EncodeMemtestTable(MemtestThorough, 7, [][2]uint64{{0, 0x6000}, {0x100000, 0x200000}})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for off, want := range map[int]uint32{0: MemtestMagic, 4: 1, 8: 1, 12: 7, 16: 2, 0x20: 0, 0x24: 0x6000, 0x28: 0x100000, 0x2c: 0x200000} {
		if got := le.Uint32(b[off:]); got != want {
			t.Errorf("offset %#x = %#x, want %#x", off, got, want)
		}
	}
	for _, bad := range [][][2]uint64{
		{{0x100, 0x2000}},                    // unaligned
		{{0x2000, 0x1000}},                   // inverted
		{{0x4000, 0x5000}, {0x1000, 0x2000}}, // not ascending
		{{0, 1 << 32}},                       // beyond 4 GiB
	} {
		if _, err := EncodeMemtestTable(0, 0, bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := EncodeMemtestTable(2, 0, nil); err == nil {
		t.Error("mode 2 accepted")
	}
	if _, err := EncodeMemtestTable(0, 0, make([][2]uint64, MemtestMaxRanges+1)); err == nil {
		t.Error("too many ranges accepted")
	}
}
