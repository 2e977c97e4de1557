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
	// zImageMax is the most protected-mode code a zImage (LOADED_HIGH
	// clear) can have: it loads at 0x10000 and must end below 0x90000,
	// where its real-mode part goes.
	zImageMax = 0x80000
)

// Boot protocol versions that added the setup header fields (boot.rst's
// table); a field newer than an image's protocol is not in its header,
// whatever bytes sit at its offset.
const (
	protoHeap        = 0x0201 // heap_end_ptr and CAN_USE_HEAP
	protoCmdPtr      = 0x0202 // cmd_line_ptr, ext_loader_*
	protoInitrdMax   = 0x0203 // initrd_addr_max
	protoSysSize32   = 0x0204 // syssize is four bytes wide
	protoRelocatable = 0x0205 // kernel_alignment, relocatable_kernel
	protoCmdlineSize = 0x0206 // cmdline_size
	protoSubarch     = 0x0207 // hardware_subarch, hardware_subarch_data
	protoSetupData   = 0x0209 // setup_data
	protoPrefAddress = 0x020A // pref_address, init_size, min_alignment
	protoHandover    = 0x020B // handover_offset
	protoXLoadFlags  = 0x020C // xloadflags
	protoKernelInfo  = 0x020F // kernel_info_offset
)

var headerMagic = [4]byte{'H', 'd', 'r', 'S'}

// SetupHeader holds the Linux boot protocol setup header, found at offset
// 0x1f1 of a bzImage and copied to the same offset of the zero page. Field
// names follow boot.rst; the comment gives each field's offset and the
// protocol version that introduced it. A field newer than the image's
// protocol, or beyond the header's length (0x202 + byte 0x201), is zero:
// an old header's bytes at that offset are setup code, not the field.
//
// kvmboot defines its own type rather than u-root's bzimage.LinuxHeader
// because that one starts at offset 0, spells the fields differently and
// comes with a package that shells out to unxz.
type SetupHeader struct {
	SetupSects          uint8   // 0x1f1: setup size in 512-byte sectors; 0 means 4
	RootFlags           uint16  // 0x1f2
	SysSize             uint32  // 0x1f4: protected-mode size in 16-byte paragraphs (2 bytes wide before 2.04)
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

// LoadedHigh reports whether the image is a bzImage, whose protected-mode
// part loads at 1 MiB (loadflags bit 0), rather than a zImage, whose part
// loads at 0x10000.
func (h *SetupHeader) LoadedHigh() bool { return h.LoadFlags&loadedHigh != 0 }

// Relocatable reports whether the protected-mode part may load anywhere
// aligned to kernel_alignment (2.05+, relocatable_kernel).
func (h *SetupHeader) Relocatable() bool { return h.RelocatableKernel != 0 }

// A BzImage is a parsed image of the Linux boot protocol: a bzImage, or a
// zImage when LOADED_HIGH is clear. Its byte slices alias the input.
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
	// payload_offset for payload_length bytes, when the image has one
	// kvmboot can decompress (protocol 2.08+, a known compression): Linux's
	// compressed vmlinux. It is nil for an image whose protected-mode part
	// is code to run as it is (memory testers, network and disk loaders,
	// kernels before 2.08): only its own setup code boots it (linux16).
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

// ParseBzImage parses an image of the Linux boot protocol 2.00 or later
// held in memory. It finds the compressed payload that kvmboot decompresses
// itself (2.08+), and otherwise leaves Payload nil. Like QEMU and GRUB it
// loads what the file has: syssize counts 16-byte paragraphs rounded up,
// so the protected-mode part may end up to 15 bytes before syssize says.
// Every problem is a *FormatError with Context "bzImage".
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
	if h.Version < 0x0200 {
		return nil, bad("boot protocol %s: \"HdrS\" images start at 2.00", versionString(h.Version))
	}
	if need := 0x250; h.Version >= minPayloadVersion && end < need {
		return nil, bad("protocol %s header ends at 0x%x, before payload_length's end (0x%x)", versionString(h.Version), end, need)
	}
	setupSize := h.SetupSize()
	if setupSize > len(b) {
		return nil, bad("setup code (%d sectors, %d bytes) runs past the end of the %d-byte file", setupSize/sectorSize-1, setupSize, len(b))
	}
	pm := b[setupSize:]
	if len(pm) == 0 {
		return nil, bad("no protected-mode code after the %d bytes of setup code", setupSize)
	}
	// Before 2.04 syssize is two bytes wide, too narrow for a bzImage.
	if h.Version >= protoSysSize32 || !h.LoadedHigh() {
		if want := uint64(h.SysSize) * 16; uint64(len(pm))+15 < want {
			return nil, &FormatError{Context: "bzImage", Msg: fmt.Sprintf("file truncated: syssize says %d bytes of protected-mode code, the file has %d", want, len(pm)), Class: ErrTruncated}
		}
	}
	if !h.LoadedHigh() && len(pm) > zImageMax {
		return nil, bad("zImage (LOADED_HIGH clear) with %d bytes of protected-mode code: it loads at 0x10000 and must end below 0x90000 (%d bytes)", len(pm), zImageMax)
	}
	img := &BzImage{Header: h, HeaderBytes: raw, Setup: b[:setupSize], ProtectedMode: pm, Compression: CompressionNone}
	if h.Version < minPayloadVersion || h.PayloadLength == 0 {
		return img, nil
	}
	off, n := uint64(h.PayloadOffset), uint64(h.PayloadLength)
	if off+n > uint64(len(pm)) {
		return nil, bad("payload [0x%x, 0x%x) lies outside the %d-byte protected-mode part", off, off+n, len(pm))
	}
	payload := pm[off : off+n]
	if c := Sniff(payload); c != CompressionNone {
		img.Payload, img.Compression = payload, c
	}
	return img, nil
}

// rawWhy says why an image has no payload for kvmboot to decompress.
func (bz *BzImage) rawWhy() string {
	h := bz.Header
	switch {
	case h.Version < minPayloadVersion:
		return fmt.Sprintf("boot protocol %s has no payload_offset (2.08+): no compressed kernel to unpack", versionString(h.Version))
	case h.PayloadLength == 0:
		return "payload_length is 0: no compressed kernel to unpack"
	}
	p := bz.ProtectedMode[h.PayloadOffset:]
	return fmt.Sprintf("the payload starts with % x, no compression kvmboot knows", p[:min(len(p), 4)])
}

// parseSetupHeader decodes raw, the header bytes from 0x1f1 on; fields that
// do not fit in raw, or are newer than its protocol version, stay zero.
func parseSetupHeader(raw []byte) SetupHeader {
	var version uint16
	if i := 0x206 - setupHeaderOffset; i+2 <= len(raw) {
		version = binary.LittleEndian.Uint16(raw[i:])
	}
	// Each getter reads the field at its zero-page offset if raw holds it
	// and the protocol has it.
	field := func(off, size int, since uint16) []byte {
		i := off - setupHeaderOffset
		if i+size > len(raw) || version < since {
			return nil
		}
		return raw[i : i+size]
	}
	u8 := func(off int, since uint16) uint8 {
		if f := field(off, 1, since); f != nil {
			return f[0]
		}
		return 0
	}
	u16 := func(off int, since uint16) uint16 {
		if f := field(off, 2, since); f != nil {
			return binary.LittleEndian.Uint16(f)
		}
		return 0
	}
	u32 := func(off int, since uint16) uint32 {
		if f := field(off, 4, since); f != nil {
			return binary.LittleEndian.Uint32(f)
		}
		return 0
	}
	u64 := func(off int, since uint16) uint64 {
		if f := field(off, 8, since); f != nil {
			return binary.LittleEndian.Uint64(f)
		}
		return 0
	}
	h := SetupHeader{
		SetupSects:          u8(0x1f1, 0),
		RootFlags:           u16(0x1f2, 0),
		SysSize:             u32(0x1f4, protoSysSize32),
		RAMSize:             u16(0x1f8, 0),
		VidMode:             u16(0x1fa, 0),
		RootDev:             u16(0x1fc, 0),
		BootFlag:            u16(0x1fe, 0),
		Jump:                u16(0x200, 0),
		Version:             version,
		RealmodeSwitch:      u32(0x208, 0),
		StartSysSeg:         u16(0x20c, 0),
		KernelVersion:       u16(0x20e, 0),
		TypeOfLoader:        u8(0x210, 0),
		LoadFlags:           u8(0x211, 0),
		SetupMoveSize:       u16(0x212, 0),
		Code32Start:         u32(0x214, 0),
		RamdiskImage:        u32(0x218, 0),
		RamdiskSize:         u32(0x21c, 0),
		BootsectKludge:      u32(0x220, 0),
		HeapEndPtr:          u16(0x224, protoHeap),
		ExtLoaderVer:        u8(0x226, protoCmdPtr),
		ExtLoaderType:       u8(0x227, protoCmdPtr),
		CmdLinePtr:          u32(0x228, protoCmdPtr),
		InitrdAddrMax:       u32(0x22c, protoInitrdMax),
		KernelAlignment:     u32(0x230, protoRelocatable),
		RelocatableKernel:   u8(0x234, protoRelocatable),
		MinAlignment:        u8(0x235, protoPrefAddress),
		XLoadFlags:          u16(0x236, protoXLoadFlags),
		CmdlineSize:         u32(0x238, protoCmdlineSize),
		HardwareSubarch:     u32(0x23c, protoSubarch),
		HardwareSubarchData: u64(0x240, protoSubarch),
		PayloadOffset:       u32(0x248, minPayloadVersion),
		PayloadLength:       u32(0x24c, minPayloadVersion),
		SetupData:           u64(0x250, protoSetupData),
		PrefAddress:         u64(0x258, protoPrefAddress),
		InitSize:            u32(0x260, protoPrefAddress),
		HandoverOffset:      u32(0x264, protoHandover),
		KernelInfoOffset:    u32(0x268, protoKernelInfo),
	}
	if version < protoSysSize32 {
		h.SysSize = uint32(u16(0x1f4, 0))
	}
	copy(h.HeaderMagic[:], field(headerMagicOffset, 4, 0))
	return h
}

// versionString formats a protocol version the way boot.rst writes it: 2.08.
func versionString(v uint16) string {
	return fmt.Sprintf("%d.%02d", v>>8, v&0xff)
}
