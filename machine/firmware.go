package machine

import (
	"fmt"
	"slices"

	"kvmboot/loader"
	"kvmboot/realmode"
)

// ForPlatform returns what a backend loads to run plan on a machine that
// p describes, with the plan's processors: the firmware image with the MP
// table (loader.MPTable) and the root pointer of the ACPI tables in its F
// segment, and the plan with those tables in its ACPI page
// (loader.ACPITables). A plan without an ACPI page gets no ACPI tables;
// a machine without firmware tables (p nil) gets the image as built and
// the plan as it is: the standard searches then find nothing.
func ForPlatform(plan *loader.Plan, p *loader.Platform) (rom []byte, placed *loader.Plan, err error) {
	if p == nil {
		return realmode.Firmware, plan, nil
	}
	m := *p
	m.CPUs = plan.NumCPUs()
	var t realmode.ROMTables
	if t.MPFloating, t.MPConfig, err = loader.MPTable(m); err != nil {
		return nil, nil, err
	}
	placed = plan
	if plan.ACPI.Size() != 0 {
		var tables []byte
		if tables, t.RSDP, err = loader.ACPITables(m, plan.ACPI.Start, plan.MemSize); err != nil {
			return nil, nil, err
		}
		i := slices.IndexFunc(plan.Placements, func(pl loader.Placement) bool { return pl.Range() == plan.ACPI })
		if i < 0 {
			return nil, nil, fmt.Errorf("the plan reserves %v for the ACPI tables but places nothing there", plan.ACPI)
		}
		copied := *plan
		copied.Placements = slices.Clone(plan.Placements)
		copied.Placements[i].Data = tables
		placed = &copied
	}
	if rom, err = realmode.WithTables(t); err != nil {
		return nil, nil, err
	}
	return rom, placed, nil
}
