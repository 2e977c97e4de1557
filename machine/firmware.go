package machine

import (
	"fmt"
	"slices"

	"kvmboot/loader"
	"kvmboot/realmode"
)

// ForPlatform returns what a backend loads to run plan on a machine that
// p describes: the firmware image with the root pointer of p's ACPI
// tables in its F segment, and the plan with those tables in its ACPI
// page (loader.ACPITables). A machine without ACPI (p nil), or a plan
// without an ACPI page, gets the image as built and the plan as it is:
// the standard search then finds no tables.
func ForPlatform(plan *loader.Plan, p *loader.Platform) (rom []byte, placed *loader.Plan, err error) {
	if p == nil || plan.ACPI.Size() == 0 {
		return realmode.Firmware, plan, nil
	}
	tables, rsdp, err := loader.ACPITables(*p, plan.ACPI.Start, plan.MemSize)
	if err != nil {
		return nil, nil, err
	}
	if rom, err = realmode.WithRSDP(rsdp); err != nil {
		return nil, nil, err
	}
	i := slices.IndexFunc(plan.Placements, func(pl loader.Placement) bool { return pl.Range() == plan.ACPI })
	if i < 0 {
		return nil, nil, fmt.Errorf("the plan reserves %v for the ACPI tables but places nothing there", plan.ACPI)
	}
	copied := *plan
	copied.Placements = slices.Clone(plan.Placements)
	copied.Placements[i].Data = tables
	return rom, &copied, nil
}
