package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Offsets in a bzImage file and in the zero page (boot_params), which share
// the setup header's layout (Documentation/arch/x86/boot.rst).
const (
	setupHeaderOffset = 0x1f1
	bootFlagOffset    = 0x1fe
	headerMagicOffset = 0x202
	// setupHeaderLimit is where struct setup_header's room in boot_params
	// ends (edd_mbr_sig_buffer follows): a header that claims to run past it
	// would overwrite other zero-page fields when copied.
	setupHeaderLimit = 0x290
	sectorSize       = 512
	bootFlag         = 0xAA55
	// minPayloadVersion is the first protocol with payload_offset and
	// payload_length.
	minPayloadVersion = 0x0208
)

var headerMagic = [4]byte{'H', 'd', 'r', 'S'}

// SetupHeader holds the Linux boot protocol setup header, found at offset
// 0x1f1 of a bzImage and copied to the same offset of the zero page. Field
// names follow boot.rst; the comment gives each field's offset and the
// protocol version that introduced it. Fields beyond the header's length
// (0x202 + byte 0x201), that is, newer than the image's protocol, are zero.
//
// kvmboot defines its own type rather than u-root's bzimage.LinuxHeader
// because that one starts at offset 0, spells the fields differently and
// comes with a package that shells out to unxz.
type SetupHeader struct {
	SetupSects          uint8   // 0x1f1: setup size in 512-byte sectors; 0 means 4
	RootFlags           uint16  // 0x1f2
	SysSize             uint32  // 0x1f4 (2.04+): protected-mode size in 16-byte paragraphs
	RAMSize             uint16  // 0x1f8: obsolete
	VidMode             uint16  // 0x1fa
	RootDev             uint16  // 0x1fc
	BootFlag            uint16  // 0x1fe: 0xAA55
	Jump                uint16  // 0x200: short jump; its second byte gives the header length
	HeaderMagic         [4]byte // 0x202: "HdrS"
	Version             uint16  // 0x206: protocol version, major<<8 | minor
	RealmodeSwitch      uint32  // 0x208
	StartSysSeg         uint16  // 0x20c: obsolete
	KernelVersion       uint16  // 0x20e: pointer to the version string, minus 0x200
	TypeOfLoader        uint8   // 0x210: written by the loader
	LoadFlags           uint8   // 0x211: bit 0 LOADED_HIGH, bit 7 CAN_USE_HEAP
	SetupMoveSize       uint16  // 0x212
	Code32Start         uint32  // 0x214: 32-bit entry for the 16-bit protocol
	RamdiskImage        uint32  // 0x218: written by the loader
	RamdiskSize         uint32  // 0x21c: written by the loader
	BootsectKludge      uint32  // 0x220: obsolete
	HeapEndPtr          uint16  // 0x224 (2.01+): written by the loader
	ExtLoaderVer        uint8   // 0x226 (2.02+)
	ExtLoaderType       uint8   // 0x227 (2.02+)
	CmdLinePtr          uint32  // 0x228 (2.02+): written by the loader
	InitrdAddrMax       uint32  // 0x22c (2.03+): highest address for the initrd's last byte
	KernelAlignment     uint32  // 0x230 (2.05+)
	RelocatableKernel   uint8   // 0x234 (2.05+)
	MinAlignment        uint8   // 0x235 (2.10+): log2 of the minimum alignment
	XLoadFlags          uint16  // 0x236 (2.12+)
	CmdlineSize         uint32  // 0x238 (2.06+): longest command line, without the NUL
	HardwareSubarch     uint32  // 0x23c (2.07+): 0 = PC
	HardwareSubarchData uint64  // 0x240 (2.07+)
	PayloadOffset       uint32  // 0x248 (2.08+): from the start of the protected-mode code
	PayloadLength       uint32  // 0x24c (2.08+)
	SetupData           uint64  // 0x250 (2.09+): written by the loader
	PrefAddress         uint64  // 0x258 (2.10+): preferred load address
	InitSize            uint32  // 0x260 (2.10+): memory the kernel needs from its load address
	HandoverOffset      uint32  // 0x264 (2.11+): EFI handover entry
	KernelInfoOffset    uint32  // 0x268 (2.15+)
}

// SetupSize returns the size in bytes of the real-mode setup code, boot
// sector included: (setup_sects+1)*512, with 0 sectors meaning 4 for old
// kernels.
func (h *SetupHeader) SetupSize() int {
	sects := int(h.SetupSects)
	if sects == 0 {
		sects = 4
	}
	return (sects + 1) * sectorSize
}

// A BzImage is a parsed Linux bzImage. Its byte slices alias the input.
type BzImage struct {
	Header SetupHeader
	// HeaderBytes are the raw bytes [0x1f1, 0x202+byte[0x201]): what the
	// boot protocol says to copy into the zero page, fields this parser does
	// not know included.
	HeaderBytes []byte
	// Setup is the real-mode setup code, (setup_sects+1)*512 bytes from
	// offset 0.
	Setup []byte
	// ProtectedMode is everything after the setup sectors: what the 16-bit
	// protocol loads at code32_start.
	ProtectedMode []byte
	// Payload is the compressed kernel inside ProtectedMode, at
	// payload_offset for payload_length bytes.
	Payload     []byte
	Compression Compression
}

// IsBzImage reports whether b starts like a bzImage: the boot flag 0xAA55
// at 0x1fe and "HdrS" at 0x202. It is the cheap test for choosing a parser;
// ParseBzImage says what is wrong with an image that passes it.
func IsBzImage(b []byte) bool {
	return len(b) >= headerMagicOffset+len(headerMagic) &&
		binary.LittleEndian.Uint16(b[bootFlagOffset:]) == bootFlag &&
		bytes.Equal(b[headerMagicOffset:headerMagicOffset+len(headerMagic)], headerMagic[:])
}

// ParseBzImage parses a bzImage held in memory. It needs boot protocol 2.08
// or later, because kvmboot decompresses the payload itself rather than
// running the image's own decompressor, and only 2.08 says where the payload
// is. Every problem is a *FormatError with Context "bzImage".
func ParseBzImage(b []byte) (*BzImage, error) {
	bad := func(format string, args ...any) error {
		return &FormatError{Context: "bzImage", Msg: fmt.Sprintf(format, args...)}
	}
	if len(b) < headerMagicOffset+len(headerMagic) {
		return nil, bad("file is %d bytes, too short for a setup header (0x%x)", len(b), headerMagicOffset+len(headerMagic))
	}
	if f := binary.LittleEndian.Uint16(b[bootFlagOffset:]); f != bootFlag {
		return nil, bad("no boot flag at 0x%x (found 0x%04x, want 0x%04x)", bootFlagOffset, f, bootFlag)
	}
	if !bytes.Equal(b[headerMagicOffset:headerMagicOffset+len(headerMagic)], headerMagic[:]) {
		return nil, bad("no \"HdrS\" at 0x%x: not a Linux image, or one older than boot protocol 2.00", headerMagicOffset)
	}
	// The jump at 0x200 skips the header, so its target marks the end.
	end := headerMagicOffset + int(b[0x201])
	if end < 0x208 {
		return nil, bad("setup header ends at 0x%x, before the protocol version at 0x206", end)
	}
	if end > setupHeaderLimit {
		return nil, bad("setup header claims to end at 0x%x, past the zero page's room for it (0x%x)", end, setupHeaderLimit)
	}
	if end > len(b) {
		return nil, bad("setup header ends at 0x%x, past the end of the %d-byte file", end, len(b))
	}
	raw := b[setupHeaderOffset:end]
	h := parseSetupHeader(raw)
	if h.Version < minPayloadVersion {
		return nil, bad("boot protocol %s is older than 2.08, which added payload_offset and payload_length: kvmboot cannot find the compressed kernel", versionString(h.Version))
	}
	if need := 0x250; end < need {
		return nil, bad("protocol %s header ends at 0x%x, before payload_length's end (0x%x)", versionString(h.Version), end, need)
	}
	setupSize := h.SetupSize()
	if setupSize > len(b) {
		return nil, bad("setup code (%d sectors, %d bytes) runs past the end of the %d-byte file", setupSize/sectorSize-1, setupSize, len(b))
	}
	pm := b[setupSize:]
	if want := uint64(h.SysSize) * 16; uint64(len(pm)) < want {
		return nil, bad("file truncated: syssize says %d bytes of protected-mode code, the file has %d", want, len(pm))
	}
	off, n := uint64(h.PayloadOffset), uint64(h.PayloadLength)
	if off+n > uint64(len(pm)) {
		return nil, bad("payload [0x%x, 0x%x) lies outside the %d-byte protected-mode part", off, off+n, len(pm))
	}
	payload := pm[off : off+n]
	c := Sniff(payload)
	if c == CompressionNone {
		return nil, bad("unknown payload compression (payload starts with % x)", payload[:min(len(payload), 8)])
	}
	return &BzImage{
		Header:        h,
		HeaderBytes:   raw,
		Setup:         b[:setupSize],
		ProtectedMode: pm,
		Payload:       payload,
		Compression:   c,
	}, nil
}

// parseSetupHeader decodes raw, the header bytes from 0x1f1 on; fields that
// do not fit in raw stay zero.
func parseSetupHeader(raw []byte) SetupHeader {
	// Each getter reads the field at its zero-page offset if raw holds it.
	field := func(off, size int) []byte {
		i := off - setupHeaderOffset
		if i+size > len(raw) {
			return nil
		}
		return raw[i : i+size]
	}
	u8 := func(off int) uint8 {
		if f := field(off, 1); f != nil {
			return f[0]
		}
		return 0
	}
	u16 := func(off int) uint16 {
		if f := field(off, 2); f != nil {
			return binary.LittleEndian.Uint16(f)
		}
		return 0
	}
	u32 := func(off int) uint32 {
		if f := field(off, 4); f != nil {
			return binary.LittleEndian.Uint32(f)
		}
		return 0
	}
	u64 := func(off int) uint64 {
		if f := field(off, 8); f != nil {
			return binary.LittleEndian.Uint64(f)
		}
		return 0
	}
	h := SetupHeader{
		SetupSects:          u8(0x1f1),
		RootFlags:           u16(0x1f2),
		SysSize:             u32(0x1f4),
		RAMSize:             u16(0x1f8),
		VidMode:             u16(0x1fa),
		RootDev:             u16(0x1fc),
		BootFlag:            u16(0x1fe),
		Jump:                u16(0x200),
		Version:             u16(0x206),
		RealmodeSwitch:      u32(0x208),
		StartSysSeg:         u16(0x20c),
		KernelVersion:       u16(0x20e),
		TypeOfLoader:        u8(0x210),
		LoadFlags:           u8(0x211),
		SetupMoveSize:       u16(0x212),
		Code32Start:         u32(0x214),
		RamdiskImage:        u32(0x218),
		RamdiskSize:         u32(0x21c),
		BootsectKludge:      u32(0x220),
		HeapEndPtr:          u16(0x224),
		ExtLoaderVer:        u8(0x226),
		ExtLoaderType:       u8(0x227),
		CmdLinePtr:          u32(0x228),
		InitrdAddrMax:       u32(0x22c),
		KernelAlignment:     u32(0x230),
		RelocatableKernel:   u8(0x234),
		MinAlignment:        u8(0x235),
		XLoadFlags:          u16(0x236),
		CmdlineSize:         u32(0x238),
		HardwareSubarch:     u32(0x23c),
		HardwareSubarchData: u64(0x240),
		PayloadOffset:       u32(0x248),
		PayloadLength:       u32(0x24c),
		SetupData:           u64(0x250),
		PrefAddress:         u64(0x258),
		InitSize:            u32(0x260),
		HandoverOffset:      u32(0x264),
		KernelInfoOffset:    u32(0x268),
	}
	copy(h.HeaderMagic[:], field(headerMagicOffset, 4))
	return h
}

// versionString formats a protocol version the way boot.rst writes it: 2.08.
func versionString(v uint16) string {
	return fmt.Sprintf("%d.%02d", v>>8, v&0xff)
}
