package machine

import (
	"errors"
	"fmt"

	"kvmboot/loader"
	"kvmboot/realmode"
)

// GuestMemory is guest RAM as seen from the host: byte i of Bytes is guest
// physical address i. Every host access to guest memory goes through its
// bounds-checked methods, so no guest-controlled address can reach host
// memory outside the mapping.
type GuestMemory struct {
	b []byte
}

// NewGuestMemory wraps a host mapping of guest RAM starting at physical 0.
func NewGuestMemory(b []byte) *GuestMemory { return &GuestMemory{b: b} }

// Size is the number of bytes of guest RAM.
func (m *GuestMemory) Size() uint64 { return uint64(len(m.b)) }

// ErrOutsideRAM is the error of an access beyond guest RAM, for errors.Is.
var ErrOutsideRAM = errors.New("outside RAM")

// Slice returns the n bytes at addr, aliasing guest memory.
func (m *GuestMemory) Slice(addr, n uint64) ([]byte, error) {
	if addr > m.Size() || n > m.Size()-addr {
		return nil, fmt.Errorf("guest range %#x+%#x is %w (%#x bytes)", addr, n, ErrOutsideRAM, m.Size())
	}
	return m.b[addr : addr+n : addr+n], nil
}

// Read copies guest memory at addr into p.
func (m *GuestMemory) Read(addr uint64, p []byte) error {
	s, err := m.Slice(addr, uint64(len(p)))
	if err == nil {
		copy(p, s)
	}
	return err
}

// Write copies p into guest memory at addr.
func (m *GuestMemory) Write(addr uint64, p []byte) error {
	s, err := m.Slice(addr, uint64(len(p)))
	if err == nil {
		copy(s, p)
	}
	return err
}

// Load writes every placement of the plan into guest memory: its data, then
// zeros up to its size (bss, and whatever an earlier boot left there).
func (m *GuestMemory) Load(plan *loader.Plan) error {
	for _, p := range plan.Placements {
		if uint64(len(p.Data)) > p.Size {
			return fmt.Errorf("%s: %d bytes of data in a %d-byte placement", p.What, len(p.Data), p.Size)
		}
		s, err := m.Slice(p.Start, p.Size)
		if err != nil {
			return fmt.Errorf("%s: %w", p.What, err)
		}
		n := copy(s, p.Data)
		clear(s[n:])
	}
	return nil
}

// StubState reads what the entry stub left in the parameter block.
func (m *GuestMemory) StubState() realmode.StubState {
	b, err := m.Slice(realmode.ParamsAddr, realmode.OffChecks)
	if err != nil {
		return realmode.StubState{}
	}
	return realmode.ReadStubState(b)
}

// BIOSLog decodes the in-guest BIOS's log of services it does not provide.
func (m *GuestMemory) BIOSLog() []string {
	b, err := m.Slice(realmode.BIOSTablesAddr, realmode.BIOSTablesSize)
	if err != nil {
		return nil
	}
	return realmode.DecodeBIOSLog(b)
}

// StubFailure explains a stub that wrote ExitStubFailed, naming the piece
// whose checksum did not match.
func StubFailure(st realmode.StubState, plan *loader.Plan) string {
	switch st.Status {
	case realmode.StatusBadSum:
		checks := plan.Checks()
		if int(st.Detail) < len(checks) {
			c := checks[st.Detail]
			return fmt.Sprintf("checksum mismatch in %s at %#x-%#x: stub computed xxh32 %#08x, loader placed %#08x",
				c.What, c.Addr, uint64(c.Addr)+uint64(c.Len), st.Got, c.Sum)
		}
		return fmt.Sprintf("checksum mismatch in piece %d (xxh32 %#08x)", st.Detail, st.Got)
	case realmode.StatusNoParams:
		return "entry stub found no valid parameter block"
	}
	return ""
}
