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

// TestForPlatform: a machine with ACPI gets its tables in the plan's ACPI
// page and their root pointer in its copy of the image, pointing into
// that page; the plan and the shared image stay as they were. A machine
// without ACPI gets both untouched.
func TestForPlatform(t *testing.T) {
	plan, err := loader.Build(loader.Config{Kernel: testkernel.ELF, MemSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p := &loader.Platform{Name: "test", CPUs: 2}
	rom, placed, err := ForPlatform(plan, p)
	if err != nil {
		t.Fatal(err)
	}
	tables, rsdp, _ := loader.ACPITables(*p, plan.ACPI.Start, plan.MemSize)
	if !bytes.Equal(rom[realmode.RSDPOffset:realmode.RSDPOffset+realmode.RSDPSize], rsdp) {
		t.Errorf("the image's RSDP slot holds % x", rom[realmode.RSDPOffset:realmode.RSDPOffset+realmode.RSDPSize])
	}
	if rsdt := uint64(binary.LittleEndian.Uint32(rsdp[16:])); !plan.ACPI.Contains(memmap.Range{Start: rsdt, End: rsdt + 36}) {
		t.Errorf("RSDT at %#x, outside the ACPI page %v", rsdt, plan.ACPI)
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
	if !bytes.Equal(realmode.Firmware[realmode.RSDPOffset:realmode.RSDPOffset+realmode.RSDPSize], make([]byte, realmode.RSDPSize)) {
		t.Error("ForPlatform wrote into the shared image")
	}

	rom, placed, err = ForPlatform(plan, nil)
	if err != nil || !bytes.Equal(rom, realmode.Firmware) || placed != plan {
		t.Errorf("no ACPI: %v, image changed %v, plan replaced %v", err, !bytes.Equal(rom, realmode.Firmware), placed != plan)
	}
	if _, _, err := ForPlatform(plan, &loader.Platform{Name: "test", CPUs: 0}); err == nil {
		t.Error("a machine of 0 processors accepted")
	}
}
