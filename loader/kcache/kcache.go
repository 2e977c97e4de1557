// Package kcache keeps decompressed kernels on disk, keyed by the hash of
// the compressed input, so that booting the same bzImage again skips the
// decompression (about 0.45 s for Debian's xz payload here).
//
// Entries are written to a temporary file and renamed into place, so
// concurrent runs never see half an entry; each entry carries the SHA-256
// of its content, so a corrupted entry is detected, removed and rebuilt.
package kcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// magic starts every entry; bump it when the format changes.
const magic = "kvmboot-kcache-1\n"

// DefaultEntries is how many kernels a cache keeps before it evicts the
// least recently used.
const DefaultEntries = 8

// Cache is a directory of decompressed kernels.
type Cache struct {
	Dir        string
	MaxEntries int // DefaultEntries when 0
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

func (c *Cache) path(key string) string { return filepath.Join(c.Dir, key+".elf") }

// Get returns the decompressed bytes stored for key. A missing entry is a
// miss; a corrupted one is removed and is a miss too.
func (c *Cache) Get(key string) ([]byte, bool) {
	b, err := os.ReadFile(c.path(key))
	if err != nil {
		return nil, false
	}
	data, ok := decode(b)
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
	sum := sha256.Sum256(data)
	_, err = f.Write(append(append([]byte(magic), sum[:]...), data...))
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

func decode(b []byte) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(magic)) || len(b) < len(magic)+sha256.Size {
		return nil, false
	}
	want := b[len(magic) : len(magic)+sha256.Size]
	data := b[len(magic)+sha256.Size:]
	sum := sha256.Sum256(data)
	return data, bytes.Equal(sum[:], want)
}

// evict removes the least recently used entries beyond MaxEntries.
func (c *Cache) evict() {
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
