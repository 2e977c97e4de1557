package qemu

import (
	"context"
	"net"
)

// Monitor is a QMP connection for QEMUs that this package does not start:
// the nested KVM lab (e2e/lab) watches its outer VM's CPU through it.
type Monitor struct{ c *qmpClient }

// NewMonitor speaks QMP over conn, a connection QEMU made to a socket of
// ours (-chardev socket -mon mode=control): it waits for the greeting and
// negotiates capabilities.
func NewMonitor(ctx context.Context, conn net.Conn) (*Monitor, error) {
	c := newQMP(conn)
	if err := c.awaitGreeting(ctx); err != nil {
		c.close()
		return nil, err
	}
	if _, err := c.execute(ctx, "qmp_capabilities", nil); err != nil {
		c.close()
		return nil, err
	}
	return &Monitor{c: c}, nil
}

// HMP runs a human monitor command ("info registers") and returns its text.
func (m *Monitor) HMP(ctx context.Context, line string) (string, error) { return m.c.hmp(ctx, line) }

// Close ends the connection.
func (m *Monitor) Close() { m.c.close() }
