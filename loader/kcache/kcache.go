// Package kcache keeps decompressed kernels on disk, keyed by the hash of
// the compressed input, so that booting the same bzImage again skips the
// decompression (about 0.45 s for Debian's xz payload here).
//
// Entries are written to a temporary file and renamed into place, so
// concurrent runs never see half an entry; each entry carries its length
// and a CRC-32C of its content, so a truncated or corrupted entry is
// detected, removed and rebuilt. The key is the input's SHA-256: an
// entry answers for that input only. The check is a CRC, not a second
// SHA-256, because it runs on every warm boot over the whole decompressed
// kernel: 1.5-3 ms for Debian's 16 MB here where SHA-256 took 8-18 ms,
// and it guards against damage, not against someone who can write the
// cache directory (they could as well replace the kernel).
package kcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"kvmboot/internal/hugemem"
)

// magic starts every entry; bump it when the format changes. The header
// goes on with the content's length (8 bytes, little-endian) and its
// CRC-32C (4 bytes); the content follows.
const (
	magic      = "kvmboot-kcache-2\n"
	headerSize = len(magic) + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DefaultEntries is how many kernels a cache keeps before it evicts the
// least recently used.
const DefaultEntries = 8

// Cache is a directory of decompressed kernels. Its methods may be
// called from several goroutines; a Cache must not be copied.
type Cache struct {
	Dir        string
	MaxEntries int // DefaultEntries when 0

	mu      sync.Mutex
	pending map[string][]byte // PutLater's entries until they are stored
	stores  sync.WaitGroup
}

// Default returns the cache under the user's cache directory
// ($XDG_CACHE_HOME/kvmboot/kernels), or nil when there is none.
func Default() *Cache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return nil
	}
	return &Cache{Dir: filepath.Join(dir, "kvmboot", "kernels")}
}

// Key names the entry for a compressed input.
func Key(input []byte) string {
	sum := sha256.Sum256(input)
	return hex.EncodeToString(sum[:])
}

// path is the entry for key. The name carries the format's version, so
// that kvmboot binaries of another format (which take each other's
// entries for damaged ones) do not evict entries they cannot read.
func (c *Cache) path(key string) string { return filepath.Join(c.Dir, key+"-2.elf") }

// Get returns the decompressed bytes stored for key. A missing entry is a
// miss; a corrupted one is removed and is a miss too. An entry PutLater
// is still storing is a hit.
func (c *Cache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	data, ok := c.pending[key]
	c.mu.Unlock()
	if ok {
		return data, true
	}
	b, err := hugemem.ReadFile(c.path(key))
	if err != nil {
		return nil, false
	}
	data, ok = decode(b)
	if !ok {
		os.Remove(c.path(key))
		return nil, false
	}
	now := time.Now()
	os.Chtimes(c.path(key), now, now) // recently used: evicted last
	return data, true
}

// Put stores data for key. Errors are returned but a caller may ignore
// them: the cache only saves time.
func (c *Cache) Put(key string, data []byte) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(c.Dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(header(data))
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path(key))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	c.evict()
	return nil
}

// PutLater is Put on a goroutine of its own, so that a boot of a kernel
// never seen does not wait for the disk (5-30 ms for Debian's 16 MB
// here). data must not change until the store is done; Get sees the entry
// at once, and Wait waits for every store, which a process must do before
// it exits (an interrupted store leaves a temporary file, which a later
// store removes). Errors are dropped: the cache only saves time.
func (c *Cache) PutLater(key string, data []byte) {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = map[string][]byte{}
	}
	c.pending[key] = data
	c.mu.Unlock()
	c.stores.Add(1)
	go func() {
		defer c.stores.Done()
		c.Put(key, data)
		c.mu.Lock()
		delete(c.pending, key)
		c.mu.Unlock()
	}()
}

// Wait returns once every store PutLater began is done. A nil Cache has
// none.
func (c *Cache) Wait() {
	if c != nil {
		c.stores.Wait()
	}
}

// header is the entry header for data.
func header(data []byte) []byte {
	h := append(make([]byte, 0, headerSize), magic...)
	h = binary.LittleEndian.AppendUint64(h, uint64(len(data)))
	return binary.LittleEndian.AppendUint32(h, crc32.Checksum(data, castagnoli))
}

// decode returns an entry's content, and false when the entry is not one
// or does not hold what its header says.
func decode(b []byte) ([]byte, bool) {
	if len(b) < headerSize || !bytes.HasPrefix(b, []byte(magic)) {
		return nil, false
	}
	data := b[headerSize:]
	return data, bytes.Equal(b[:headerSize], header(data))
}

// staleTemp is the age from which a temporary file is a store that never
// finished (its process was killed); a live one takes milliseconds.
const staleTemp = 10 * time.Minute

// evict removes the least recently used entries beyond MaxEntries, and
// temporary files that stores left behind.
func (c *Cache) evict() {
	temps, _ := filepath.Glob(filepath.Join(c.Dir, ".tmp-*"))
	for _, t := range temps {
		if info, err := os.Stat(t); err == nil && time.Since(info.ModTime()) > staleTemp {
			os.Remove(t)
		}
	}
	limit := c.MaxEntries
	if limit <= 0 {
		limit = DefaultEntries
	}
	matches, _ := filepath.Glob(filepath.Join(c.Dir, "*.elf"))
	if len(matches) <= limit {
		return
	}
	type entry struct {
		path string
		info fs.FileInfo
	}
	var es []entry
	for _, m := range matches {
		if info, err := os.Stat(m); err == nil {
			es = append(es, entry{m, info})
		}
	}
	slices.SortFunc(es, func(a, b entry) int { return a.info.ModTime().Compare(b.info.ModTime()) })
	for _, e := range es[:max(0, len(es)-limit)] {
		if err := os.Remove(e.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
}
