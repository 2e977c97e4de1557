package realmode

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestFirmwareDecodes disassembles every code byte of the image in the mode
// it runs in and fails on anything x86asm cannot decode: a .code16/.code32
// mix-up shows up here, not as a guest crash.
func TestFirmwareDecodes(t *testing.T) {
	lay, err := ReadLayout(Firmware)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []struct {
		name string
		span [2]uint16
		mode int
	}{
		{"16-bit code", lay.Code16, 16},
		{"32-bit code", lay.Code32, 32},
		{"reset vector", lay.Reset, 16},
	} {
		if part.span[0] >= part.span[1] {
			t.Fatalf("%s: empty span %v", part.name, part.span)
		}
		n := decodeAll(t, part.name, Firmware, int(part.span[0]), int(part.span[1]), part.mode)
		t.Logf("%s: %d instructions in %#x-%#x", part.name, n, part.span[0], part.span[1])
	}
}

// TestResetVector checks the classic pitfall: after .code32 the reset
// vector's far jump must still be the 5-byte 16-bit form to F000:start.
func TestResetVector(t *testing.T) {
	lay, _ := ReadLayout(Firmware)
	rv := Firmware[0xFFF0:]
	if rv[0] != 0xEA || binary.LittleEndian.Uint16(rv[3:]) != 0xF000 {
		t.Fatalf("reset vector = % x, want ea xx xx 00 f0", rv[:5])
	}
	if got := binary.LittleEndian.Uint16(rv[1:]); got != lay.Code16[0] {
		t.Fatalf("reset vector jumps to %#x, want start %#x", got, lay.Code16[0])
	}
	inst, err := x86asm.Decode(rv, 16)
	if err != nil || !strings.HasPrefix(x86asm.IntelSyntax(inst, 0, nil), "jmp far") {
		t.Fatalf("reset vector decodes as %v, %v", inst, err)
	}
}

func TestParamsEncode(t *testing.T) {
	p := Params{EIP: 0x1000000, EAX: 0x2BADB002, EBX: 0x9000, Verify: true,
		Checks: []Check{NewCheck(0x1000000, []byte("123456789"))}}
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	for off, want := range map[int]uint32{
		OffMagic: Magic, OffVersion: Version, OffEIP: 0x1000000, OffEAX: 0x2BADB002,
		OffEBX: 0x9000, OffFlags: FlagVerify, OffNChecks: 1,
		OffChecks: 0x1000000, OffChecks + 4: 9,
		OffChecks + 8: 0x937BAD67, // XXH32 of "123456789" (xxhsum -H0)
	} {
		if got := le.Uint32(b[off:]); got != want {
			t.Errorf("offset %#x = %#x, want %#x", off, got, want)
		}
	}
	if _, err := (&Params{Checks: make([]Check, MaxChecks+1)}).Encode(); err == nil {
		t.Error("too many checks accepted")
	}
}

// TestFirmwareMatchesSource makes sure the embedded constants and the
// assembler source agree on the ABI.
func TestFirmwareMatchesSource(t *testing.T) {
	checkSourceConstants(t, "firmware.S", map[string]int{
		"GDT_ADDR": GDTAddr, "PARAMS": ParamsAddr, "P_EIP": OffEIP, "P_EAX": OffEAX,
		"P_EBX": OffEBX, "P_ESI": OffESI, "P_ESP": OffESP, "P_FLAGS": OffFlags,
		"P_STATUS": OffStatus, "P_DETAIL": OffDetail, "P_GOT": OffGot,
		"P_NCHECKS": OffNChecks, "P_RM_CALL": OffRMCall, "P_RM_ENTRY": OffRMEntry, "P_RM_SEG": OffRMSeg, "P_RM_SP": OffRMSP, "P_CHECKS": OffChecks, "PARAM_MAGIC": Magic,
		"MAX_CHECKS": MaxChecks, "FLAG_VERIFY": FlagVerify, "PARAM_VERSION": Version, "EXIT_STUB_FAILED": ExitStubFailed,
		"ST_STARTED": StatusStarted, "ST_JUMPED": StatusJumped,
		"ST_BADSUM": StatusBadSum, "ST_NOPARAMS": StatusNoParams,
	})
}

func TestFirmwareSize(t *testing.T) {
	if len(Firmware) != ROMSize {
		t.Fatalf("firmware is %d bytes", len(Firmware))
	}
	if !bytes.Equal(Firmware[LayoutOffset:LayoutOffset+8], []byte("KVMBLAYT")) {
		t.Fatal("no layout table")
	}
}

func TestProbeDecodes(t *testing.T) {
	decodeAll(t, "probe", Probe, 0, len(Probe), 32)
}
