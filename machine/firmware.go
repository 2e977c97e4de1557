package machine

import (
	"fmt"
	"slices"

	"kvmboot/loader"
	"kvmboot/loader/memmap"
	"kvmboot/realmode"
)

// ForPlatform returns what a backend loads to run plan on a machine that
// p describes: the firmware image with the root pointer of p's ACPI
// tables in its F segment, and the plan with those tables in its ACPI
// page (loader.ACPITables). A machine without ACPI (p nil), or a plan
// without an ACPI page, gets the image as built and the plan as it is:
// the standard search then finds no tables.
func ForPlatform(plan *loader.Plan, p *loader.Platform) (rom []byte, placed *loader.Plan, err error) {
	rom, tables, err := Firmware(p, plan.ACPI, plan.MemSize)
	if err != nil {
		return nil, nil, err
	}
	if placed, err = WithACPITables(plan, tables); err != nil {
		return nil, nil, err
	}
	return rom, placed, nil
}

// Firmware returns the firmware image and the ACPI tables for a machine
// that p describes, its tables in the page acpi of a guest with mem bytes
// of RAM: what ForPlatform builds, before the plan exists. Everything it
// needs comes from the memory size and the bad RAM (loader.BootMap gives
// the page), so a backend can start its machine while the kernel is still
// being read. No tables (nil) for a machine without ACPI or an empty page.
func Firmware(p *loader.Platform, acpi memmap.Range, mem uint64) (rom, tables []byte, err error) {
	if p == nil || acpi.Size() == 0 {
		return realmode.Firmware, nil, nil
	}
	tables, rsdp, err := loader.ACPITables(*p, acpi.Start, mem)
	if err != nil {
		return nil, nil, err
	}
	if rom, err = realmode.WithRSDP(rsdp); err != nil {
		return nil, nil, err
	}
	return rom, tables, nil
}

// WithACPITables returns plan with tables (from Firmware) in its ACPI
// page; with no tables, plan itself.
func WithACPITables(plan *loader.Plan, tables []byte) (*loader.Plan, error) {
	if tables == nil {
		return plan, nil
	}
	i := slices.IndexFunc(plan.Placements, func(pl loader.Placement) bool { return pl.Range() == plan.ACPI })
	if i < 0 {
		return nil, fmt.Errorf("the plan reserves %v for the ACPI tables but places nothing there", plan.ACPI)
	}
	copied := *plan
	copied.Placements = slices.Clone(plan.Placements)
	copied.Placements[i].Data = tables
	return &copied, nil
}
