package kcache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestPutGet(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	in, out := []byte("compressed"), bytes.Repeat([]byte("kernel"), 1000)
	key := Key(in)
	if _, ok := c.Get(key); ok {
		t.Fatal("hit in an empty cache")
	}
	if err := c.Put(key, out); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get(key)
	if !ok || !bytes.Equal(got, out) {
		t.Fatalf("get after put: ok=%v", ok)
	}
	if Key([]byte("other")) == key {
		t.Fatal("different inputs share a key")
	}
}

// TestCorruptEntryRebuilt: a flipped byte, a truncated file or a foreign
// file is a miss, and the entry is removed so the next Put rebuilds it.
func TestCorruptEntryRebuilt(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"flipped":   func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"foreign":   func([]byte) []byte { return []byte("not an entry") },
		"empty":     func([]byte) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			c := &Cache{Dir: t.TempDir()}
			key := Key([]byte(name))
			c.Put(key, []byte("the decompressed kernel"))
			b, _ := os.ReadFile(c.path(key))
			os.WriteFile(c.path(key), damage(b), 0o600)
			if _, ok := c.Get(key); ok {
				t.Fatal("damaged entry returned")
			}
			if _, err := os.Stat(c.path(key)); !os.IsNotExist(err) {
				t.Fatalf("damaged entry not removed: %v", err)
			}
		})
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := &Cache{Dir: t.TempDir(), MaxEntries: 2}
	keys := []string{Key([]byte("a")), Key([]byte("b")), Key([]byte("c"))}
	old := time.Now().Add(-time.Hour)
	c.Put(keys[0], []byte("a"))
	c.Put(keys[1], []byte("b"))
	os.Chtimes(c.path(keys[1]), old, old)
	c.Get(keys[0]) // used: keep
	c.Put(keys[2], []byte("c"))
	if _, ok := c.Get(keys[1]); ok {
		t.Error("least recently used entry kept")
	}
	for _, k := range []string{keys[0], keys[2]} {
		if _, ok := c.Get(k); !ok {
			t.Errorf("entry %s evicted", k[:8])
		}
	}
}

// TestConcurrentPut: runs racing to fill the same entry never leave a
// partial one, and no temporary files stay behind.
func TestConcurrentPut(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	data := bytes.Repeat([]byte{0xAB}, 1<<20)
	key := Key([]byte("same input"))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Put(key, data); err != nil {
				t.Error(err)
			}
			if got, ok := c.Get(key); ok && !bytes.Equal(got, data) {
				t.Error("partial entry seen")
			}
		}()
	}
	wg.Wait()
	left, _ := filepath.Glob(filepath.Join(c.Dir, ".tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if got, ok := c.Get(key); !ok || !bytes.Equal(got, data) {
		t.Error(fmt.Sprint("final entry missing or wrong: ", ok))
	}
}

// BenchmarkGet is a warm hit: reading the entry and checking its length
// and CRC. MB/s must not fall as entries grow.
func BenchmarkGet(b *testing.B) {
	for _, mib := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			c := &Cache{Dir: b.TempDir()}
			key := Key([]byte{byte(mib)})
			if err := c.Put(key, bytes.Repeat([]byte("kernel!!"), mib<<17)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(mib << 20))
			for b.Loop() {
				if _, ok := c.Get(key); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}

// TestPutLater: an entry being stored in the background is a hit in the
// same process at once, and on disk once Wait returns.
func TestPutLater(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	data := bytes.Repeat([]byte("kernel"), 1<<16)
	key := Key([]byte("later"))
	c.PutLater(key, data)
	if got, ok := c.Get(key); !ok || !bytes.Equal(got, data) {
		t.Fatalf("pending entry: ok=%v", ok)
	}
	c.Wait()
	if got, ok := (&Cache{Dir: c.Dir}).Get(key); !ok || !bytes.Equal(got, data) {
		t.Fatalf("stored entry, seen by another cache: ok=%v", ok)
	}
	left, _ := filepath.Glob(filepath.Join(c.Dir, ".tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	var none *Cache
	none.Wait() // no cache, nothing to wait for
}

// TestStaleTempRemoved: a store whose process was killed leaves its
// temporary file; the next store removes it once it is old enough that
// no live store can own it.
func TestStaleTempRemoved(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	stale, fresh := filepath.Join(c.Dir, ".tmp-1"), filepath.Join(c.Dir, ".tmp-2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half an entry"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	os.Chtimes(stale, old, old)
	if err := c.Put(Key([]byte("x")), []byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a store's fresh temporary file removed (%v)", err)
	}
}
