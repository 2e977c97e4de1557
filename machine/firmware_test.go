package machine

import (
	"bytes"
	"encoding/binary"
	"testing"

	"kvmboot/boot/testkernel"
	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// TestForPlatform: a machine with firmware tables gets the ACPI tables for
// the plan's processors in the plan's ACPI page, their root pointer and
// the MP table in its copy of the image, the RSDP pointing into that page;
// the plan and the shared image stay as they were. A machine without
// firmware tables gets both untouched.
func TestForPlatform(t *testing.T) {
	plan, err := loader.Build(loader.Config{Kernel: testkernel.ELF, MemSize: 64 << 20, CPUs: 3})
	if err != nil {
		t.Fatal(err)
	}
	p := &loader.Platform{Name: "test"}
	rom, placed, err := ForPlatform(plan, p)
	if err != nil {
		t.Fatal(err)
	}
	tables, rsdp, _ := loader.ACPITables(loader.Platform{Name: "test", CPUs: 3}, plan.ACPI.Start, plan.MemSize)
	if !bytes.Equal(rom[realmode.RSDPOffset:realmode.RSDPOffset+realmode.RSDPSize], rsdp) {
		t.Errorf("the image's RSDP slot holds % x", rom[realmode.RSDPOffset:realmode.RSDPOffset+realmode.RSDPSize])
	}
	if rsdt := uint64(binary.LittleEndian.Uint32(rsdp[16:])); !plan.ACPI.Contains(memmap.Range{Start: rsdt, End: rsdt + 36}) {
		t.Errorf("RSDT at %#x, outside the ACPI page %v", rsdt, plan.ACPI)
	}
	floating, config, _ := loader.MPTable(loader.Platform{Name: "test", CPUs: 3})
	if !bytes.Equal(rom[realmode.MPFloatingOffset:realmode.MPFloatingOffset+realmode.MPFloatingSize], floating) ||
		!bytes.Equal(rom[realmode.MPConfigOffset:realmode.MPConfigOffset+len(config)], config) {
		t.Error("the image lacks the MP table of 3 processors")
	}
	var got []byte
	for _, pl := range placed.Placements {
		if pl.Range() == plan.ACPI {
			got = pl.Data
		}
	}
	if !bytes.Equal(got, tables) || len(placed.Placements) != len(plan.Placements) {
		t.Errorf("ACPI placement holds %d bytes, want the %d of the tables", len(got), len(tables))
	}
	for _, pl := range plan.Placements {
		if pl.What == "acpi" && len(pl.Data) != 0 {
			t.Error("ForPlatform wrote into the caller's plan")
		}
	}
	if !bytes.Equal(realmode.Firmware[realmode.MPFloatingOffset:realmode.MPFloatingOffset+realmode.MPFloatingSize], make([]byte, realmode.MPFloatingSize)) {
		t.Error("ForPlatform wrote into the shared image")
	}

	rom, placed, err = ForPlatform(plan, nil)
	if err != nil || !bytes.Equal(rom, realmode.Firmware) || placed != plan {
		t.Errorf("no firmware tables: %v, image changed %v, plan replaced %v", err, !bytes.Equal(rom, realmode.Firmware), placed != plan)
	}
	noACPI := *plan
	noACPI.ACPI = memmap.Range{}
	if rom, placed, err = ForPlatform(&noACPI, p); err != nil || placed != &noACPI || !bytes.Equal(rom[realmode.MPFloatingOffset:realmode.MPFloatingOffset+realmode.MPFloatingSize], floating) ||
		!bytes.Equal(rom[realmode.RSDPOffset:realmode.RSDPOffset+realmode.RSDPSize], make([]byte, realmode.RSDPSize)) {
		t.Errorf("a plan without an ACPI page: %v; want the MP table alone", err)
	}
	tooMany := *plan
	tooMany.CPUs = 300
	if _, _, err := ForPlatform(&tooMany, p); err == nil {
		t.Error("a machine of 300 processors accepted")
	}
}
