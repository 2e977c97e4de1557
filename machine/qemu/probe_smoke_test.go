package qemu

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestProbeSmoke(t *testing.T) {
	s := time.Now()
	p := Probe(context.Background())
	b, _ := json.MarshalIndent(p, "", " ")
	t.Logf("%s\n%v", b, time.Since(s))
}
