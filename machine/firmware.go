package machine

import (
	"fmt"
	"slices"

	"kvmboot/loader"
	"kvmboot/realmode"
)

// ForPlatform returns what a backend loads to run plan on a machine that
// p describes: Firmware for the plan's shape, and the plan with the ACPI
// tables in its ACPI page (WithACPITables).
func ForPlatform(plan *loader.Plan, p *loader.Platform) (rom []byte, placed *loader.Plan, err error) {
	rom, tables, err := Firmware(p, ShapeOf(plan))
	if err != nil {
		return nil, nil, err
	}
	if placed, err = WithACPITables(plan, tables); err != nil {
		return nil, nil, err
	}
	return rom, placed, nil
}

// Firmware returns the firmware image and the ACPI tables for a machine
// that p describes with s's processors, its tables in s's ACPI page: the
// image carries the MP table (loader.MPTable) and the root pointer of the
// ACPI tables in its F segment. Everything it needs comes from the shape
// (the memory size, the bad RAM through loader.BootMap's ACPI page, the
// processor count), so a backend can start its machine while the kernel is
// still being read. A machine without firmware tables (p nil) gets the
// image as built; a shape without an ACPI page gets no ACPI tables (nil):
// the standard searches then find nothing.
func Firmware(p *loader.Platform, s Shape) (rom, tables []byte, err error) {
	if p == nil {
		return realmode.Firmware, nil, nil
	}
	m := *p
	m.CPUs = max(s.CPUs, 1)
	var t realmode.ROMTables
	if t.MPFloating, t.MPConfig, err = loader.MPTable(m); err != nil {
		return nil, nil, err
	}
	if s.ACPI.Size() != 0 {
		if tables, t.RSDP, err = loader.ACPITables(m, s.ACPI.Start, s.MemSize); err != nil {
			return nil, nil, err
		}
	}
	if rom, err = realmode.WithTables(t); err != nil {
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
