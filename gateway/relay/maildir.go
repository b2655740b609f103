package relay

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Maildir delivers into a local Maildir, one file per envelope recipient, with
// Return-Path and Delivered-To on top as Postfix's local(8) writes them: the dev set-up
// and the tests read who got what from there.
type Maildir struct {
	Dir      string
	Hostname string
}

// fileSeq keeps file names unique within this process, whatever the clock does.
var fileSeq atomic.Int64

// Deliver writes msg once for each recipient; it returns per-recipient errors.
func (m *Maildir) Deliver(from string, rcpts []string, msg []byte) []error {
	errs := make([]error, len(rcpts))
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(m.Dir, sub), 0o750); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
	}
	for i, rc := range rcpts {
		errs[i] = m.deliverOne(from, rc, msg)
	}
	if d, err := os.Open(filepath.Join(m.Dir, "new")); err == nil {
		d.Sync()
		d.Close()
	}
	return errs
}

func (m *Maildir) deliverOne(from, rcpt string, msg []byte) error {
	now := time.Now()
	// Zero-padded, so that names sort in delivery order, as people reading a Maildir expect.
	name := fmt.Sprintf("%d.M%06dP%dQ%08d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), fileSeq.Add(1), m.Hostname)
	tmp := filepath.Join(m.Dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	// One write per file: at thirty recipients per notification, syscalls add up.
	buf := make([]byte, 0, len(msg)+len(from)+len(rcpt)+40)
	buf = fmt.Appendf(buf, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", from, rcpt)
	buf = append(buf, msg...)
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, filepath.Join(m.Dir, "new", name))
}
