package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// qmpEvent is an asynchronous QMP event.
type qmpEvent struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// shutdownData is the data of a SHUTDOWN event.
type shutdownData struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// qmpError is an error a QMP command returned.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return fmt.Sprintf("QMP %s: %s", e.Class, e.Desc) }

// qmpMessage is anything QEMU sends: greeting, reply or event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *qmpError       `json:"error"`
	ID     *uint64         `json:"id"`
	qmpEvent
}

// errQMPClosed reports a connection QEMU closed (it exited).
var errQMPClosed = errors.New("QMP connection closed")

// qmpClient speaks QMP over one connection: commands matched to replies
// by id, events queued for the caller.
type qmpClient struct {
	conn net.Conn
	wmu  sync.Mutex // one command written at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan qmpMessage
	events  []qmpEvent
	notify  chan struct{} // a token when events arrive
	closed  chan struct{} // closed when the reader ends
	readErr error

	greeting chan json.RawMessage
}

// newQMP starts reading conn. Commands follow the greeting and
// qmp_capabilities.
func newQMP(conn net.Conn) *qmpClient {
	c := &qmpClient{
		conn:     conn,
		pending:  map[uint64]chan qmpMessage{},
		notify:   make(chan struct{}, 1),
		closed:   make(chan struct{}),
		greeting: make(chan json.RawMessage, 1),
	}
	go c.read()
	return c
}

func (c *qmpClient) read() {
	dec := json.NewDecoder(bufio.NewReader(c.conn))
	var err error
	for {
		var m qmpMessage
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.QMP != nil:
			select {
			case c.greeting <- m.QMP:
			default:
			}
		case m.Event != "":
			c.mu.Lock()
			c.events = append(c.events, m.qmpEvent)
			c.mu.Unlock()
			select {
			case c.notify <- struct{}{}:
			default:
			}
		case m.ID != nil:
			c.mu.Lock()
			ch := c.pending[*m.ID]
			delete(c.pending, *m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = errQMPClosed
	}
	c.mu.Lock()
	c.readErr = err
	c.mu.Unlock()
	close(c.closed)
}

// awaitGreeting waits for QEMU's greeting. QEMU sends it as soon as the
// monitor's socket connects, before machine init; commands wait in the
// socket until its main loop runs, after machine init.
func (c *qmpClient) awaitGreeting(ctx context.Context) error {
	select {
	case <-c.greeting:
		return nil
	case <-c.closed:
		return c.err()
	case <-ctx.Done():
		return fmt.Errorf("waiting for the QMP greeting: %w", ctx.Err())
	}
}

func (c *qmpClient) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// qmpCall is a command sent whose reply may still be on its way.
type qmpCall struct {
	c       *qmpClient
	command string
	id      uint64
	reply   chan qmpMessage
	err     error // the send failed
}

// send writes one command without waiting for its reply, so that several
// can be in flight: QEMU runs them in order.
func (c *qmpClient) send(ctx context.Context, command string, args any) *qmpCall {
	c.mu.Lock()
	c.nextID++
	call := &qmpCall{c: c, command: command, id: c.nextID, reply: make(chan qmpMessage, 1)}
	c.pending[call.id] = call.reply
	c.mu.Unlock()

	select {
	case <-c.closed:
		call.err = c.err()
		return call
	default:
	}
	req := map[string]any{"execute": command, "id": call.id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		call.err = err
		return call
	}
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	}
	_, err = c.conn.Write(append(b, '\n'))
	c.conn.SetWriteDeadline(time.Time{})
	c.wmu.Unlock()
	if err != nil {
		select {
		case <-c.closed:
			err = c.err()
		default:
		}
		call.err = err
	}
	return call
}

// wait returns the command's "return" value.
func (call *qmpCall) wait(ctx context.Context) (json.RawMessage, error) {
	c := call.c
	defer func() {
		c.mu.Lock()
		delete(c.pending, call.id)
		c.mu.Unlock()
	}()
	if call.err != nil {
		return nil, fmt.Errorf("QMP %s: %w", call.command, call.err)
	}
	select {
	case m := <-call.reply:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %w", call.command, m.Error)
		}
		return m.Return, nil
	case <-c.closed:
		return nil, fmt.Errorf("QMP %s: %w", call.command, c.err())
	case <-ctx.Done():
		return nil, fmt.Errorf("QMP %s: %w", call.command, ctx.Err())
	}
}

// execute runs one command and returns its "return" value.
func (c *qmpClient) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	return c.send(ctx, command, args).wait(ctx)
}

// hmp runs a human monitor command and returns its text.
func (c *qmpClient) hmp(ctx context.Context, line string) (string, error) {
	return c.hmpArgs(ctx, map[string]any{"command-line": line})
}

// hmpOn is hmp with processor cpu as the monitor's current CPU: the one
// whose registers "info registers" shows and whose page tables "x" walks.
func (c *qmpClient) hmpOn(ctx context.Context, cpu int, line string) (string, error) {
	return c.hmpArgs(ctx, map[string]any{"command-line": line, "cpu-index": cpu})
}

func (c *qmpClient) hmpArgs(ctx context.Context, args map[string]any) (string, error) {
	raw, err := c.execute(ctx, "human-monitor-command", args)
	if err != nil {
		return "", err
	}
	var s string
	err = json.Unmarshal(raw, &s)
	return s, err
}

// status returns the run state (query-status): "running", "paused",
// "shutdown", "internal-error", "guest-panicked", ...
func (c *qmpClient) status(ctx context.Context) (string, error) {
	raw, err := c.execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	err = json.Unmarshal(raw, &st)
	return st.Status, err
}

// takeEvents returns the events queued so far.
func (c *qmpClient) takeEvents() []qmpEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev := c.events
	c.events = nil
	return ev
}

// Events is signalled when events may be queued.
func (c *qmpClient) Events() <-chan struct{} { return c.notify }

// Closed is closed when QEMU closed the connection.
func (c *qmpClient) Closed() <-chan struct{} { return c.closed }

// close ends the connection and waits for the reader.
func (c *qmpClient) close() {
	c.conn.Close()
	<-c.closed
}
