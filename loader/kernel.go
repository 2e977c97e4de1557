package loader

import (
	"fmt"
	"time"

	"kvmboot/loader/kcache"
)

// Kernel is an opened kernel file: how it was packed and what is inside.
type Kernel struct {
	// Format is "elf32", "<compression>+elf32" or "bzimage".
	Format      string
	Compression Compression // of the file, or of a bzImage's payload
	// Raw is the ELF file after decompression (for a bzImage: the
	// payload's ELF without Linux's relocation table).
	Raw []byte
	// ELF is nil for a Multiboot a.out kernel and for a bzImage without a
	// compressed payload (BzImage.Payload nil).
	ELF       *ELFImage
	Multiboot *MultibootHeader
	BzImage   *BzImage // when the file is a Linux bzImage
	// RealMode is the real-mode part the image's note carries, if any.
	RealMode *RealModePart
	// Note is kvmboot's note (kvmboot mkelf), verified. A LINUX_SETUP
	// descriptor also sets BzImage, with the setup header only.
	Note *Note
	// Stages is how long opening took in the cache and in decompression.
	Stages Stages
}

// OpenKernel identifies a kernel by its content (never its name),
// decompresses it (at most limit bytes; DefaultLimit when 0; through cache
// when not nil) and parses the ELF inside, its relocation info and its
// Multiboot header.
func OpenKernel(file []byte, limit int64, cache *kcache.Cache) (*Kernel, error) {
	return openKernel(file, limit, cache, true)
}

// openKernel is OpenKernel; without unpack it leaves a bzImage's payload
// alone, for a boot by the image's own setup code (linux16), which
// decompresses itself.
func openKernel(file []byte, limit int64, cache *kcache.Cache, unpack bool) (*Kernel, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if len(file) == 0 {
		return nil, &FormatError{Context: "kernel", Msg: "empty file", Class: ErrEmptyFile}
	}
	k := &Kernel{}
	if IsBzImage(file) {
		bz, err := ParseBzImage(file)
		if err != nil {
			return nil, err
		}
		k.Format, k.BzImage, k.Compression = "bzimage", bz, bz.Compression
		if bz.Payload == nil || !unpack {
			// Code to run as it is, or to unpack itself.
			return k, nil
		}
		blob, err := decompressCached(bz.Compression, bz.Payload, limit, cache, &k.Stages)
		if err != nil {
			return nil, err
		}
		elfEnd, err := ELFEnd(blob)
		if err != nil {
			return nil, err
		}
		k.Raw = blob[:elfEnd]
		if k.ELF, err = ParseELF(k.Raw); err != nil {
			return nil, err
		}
		// A kernel built without CONFIG_RELOCATABLE has no table.
		if bz.Header.RelocatableKernel != 0 {
			if k.ELF.Relocs, err = LinuxRelocs(blob, elfEnd); err != nil {
				return nil, err
			}
		}
		return k, nil
	}
	k.Compression = Sniff(file)
	k.Raw = file
	k.Format = "elf32"
	if k.Compression != CompressionNone {
		raw, err := decompressCached(k.Compression, file, limit, cache, &k.Stages)
		if err != nil {
			return nil, err
		}
		k.Raw = raw
		k.Format = fmt.Sprintf("%s+elf32", k.Compression)
	}
	var err error
	if k.Multiboot, err = FindMultiboot(k.Raw); err != nil {
		return nil, err
	}
	img, err := ParseELF(k.Raw)
	if err != nil {
		if k.Multiboot != nil && k.Multiboot.Flags&MBAddressFields != 0 {
			// A Multiboot kernel with address fields need not be an ELF.
			k.Format = "multiboot-aout"
			if k.Compression != CompressionNone {
				k.Format = fmt.Sprintf("%s+multiboot-aout", k.Compression)
			}
			return k, nil
		}
		return nil, err
	}
	k.ELF = img
	if img.Relocs, err = EmitRelocs(img.File); err != nil {
		return nil, err
	}
	if err := k.applyNote(); err != nil {
		return nil, err
	}
	return k, nil
}

// decompressCached is Decompress through a cache of earlier results. It
// adds the time spent to st: the key, the lookup and the verification as
// Cache, decoding as Decompress. A miss is stored in the background.
func decompressCached(c Compression, src []byte, limit int64, cache *kcache.Cache, st *Stages) ([]byte, error) {
	decompress := func() ([]byte, error) {
		start := time.Now()
		defer func() { st.Decompress += time.Since(start) }()
		return Decompress(c, src, limit)
	}
	if cache == nil {
		return decompress()
	}
	start := time.Now()
	key := kcache.Key(src)
	out, ok := cache.Get(key)
	st.Cache += time.Since(start)
	if ok && int64(len(out)) <= limit {
		return out, nil
	}
	out, err := decompress()
	if err == nil {
		cache.PutLater(key, out) // the caller waits for it (Cache.Wait); nothing changes out
	}
	return out, err
}

// memoryNeed is how much memory the kernel occupies from its load address,
// bss included, as its headers claim.
func (k *Kernel) memoryNeed() uint64 {
	var need uint64
	if k.ELF != nil {
		need = k.ELF.End - k.ELF.Base
	}
	if h := k.Multiboot; h != nil && h.Flags&MBAddressFields != 0 && h.BSSEndAddr > h.LoadAddr {
		need = max(need, uint64(h.BSSEndAddr-h.LoadAddr))
	}
	if k.BzImage != nil {
		need = max(need, uint64(k.BzImage.Header.InitSize))
	}
	return need
}
