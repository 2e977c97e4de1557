package boot

import (
	"context"
	"fmt"

	"kvmboot/machine"
	"kvmboot/machine/kvm"
)

// Backend returns the backend cfg.VMM names.
func Backend(ctx context.Context, cfg Config) (machine.Backend, error) {
	switch cfg.VMM {
	case "", "auto", "kvm":
		return kvm.Backend{Log: cfg.Log}, nil
	}
	return nil, fmt.Errorf("--vmm=%s: unknown backend (kvmboot has: auto, kvm)", cfg.VMM)
}
