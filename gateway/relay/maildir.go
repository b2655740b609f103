package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/deskgate/deskgate/internal/durable"
)

// Maildir delivers into a local Maildir, one file per envelope recipient, with
// Return-Path and Delivered-To on top as Postfix's local(8) writes them: the dev set-up
// and the tests read who got what from there.
//
// Each file is named after its delivery and recipient, so that delivering again what a crash
// kept deskgate from recording finds the file there and writes no second copy: into a
// Maildir, delivery is exactly once.
//
// A Maildir is read by local programs, which take UTF-8 as it is: unlike the SMTP upstream,
// it never downgrades a message.
type Maildir struct {
	Dir      string
	Hostname string
	sign     *signer // nil: no DKIM
	// made: tmp/, new/ and cur/ were there at the last delivery. Making sure of them for
	// every message took three stat calls each; a write that finds one gone makes them again.
	made bool
}

// fileName is the one name the copy of delivery for rcpt ever has. The zero-padded delivery
// id makes names sort in the order the deliveries were made, as people reading a Maildir
// expect; the hash tells recipients apart without putting addresses in file names.
func (m *Maildir) fileName(delivery uint64, rcpt string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(rcpt)))
	return fmt.Sprintf("%012d.R%s.deskgate.%s", delivery, hex.EncodeToString(sum[:6]), m.Hostname)
}

// Deliver signs e.Msg and writes it once for each recipient. When e.MaybeDone, a copy may be
// there already, even moved on to cur/.
func (m *Maildir) Deliver(e Envelope) []error {
	signed, err := m.sign.sign(e.Msg)
	if err != nil {
		return failAll(len(e.Rcpts), fmt.Errorf("DKIM signing failed: %w", err))
	}
	return m.write(e.ID, e.MaybeDone, e.From, e.Rcpts, signed)
}

// write is Deliver once the message is signed; retry is e.MaybeDone.
func (m *Maildir) write(delivery uint64, retry bool, from string, rcpts []string, msg []byte) []error {
	errs := make([]error, len(rcpts))
	if !m.made {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(m.Dir, sub), 0o750); err != nil {
				return failAll(len(rcpts), err)
			}
		}
		m.made = true
	}
	for i, rc := range rcpts {
		errs[i] = m.deliverOne(m.fileName(delivery, rc), retry, from, rc, msg)
		if errors.Is(errs[i], fs.ErrNotExist) {
			m.made = false // a folder was removed under it: made again on the next try
		}
	}
	// The renames are durable only once the directory is synced; an error here means the
	// files may be lost on a power cut, so every recipient is tried again.
	if err := durable.SyncDir(filepath.Join(m.Dir, "new")); err != nil {
		failRest(errs, err)
	}
	return errs
}

// Via is what the "accepted by" reply names.
func (m *Maildir) Via() string { return "maildir" }

// Parallel is one: upstream.max_connections counts SMTP connections, which a Maildir has
// none of; its deliveries are written one at a time.
func (m *Maildir) Parallel() int { return 1 }

// Recover removes what a crash left in tmp/ (CleanTmp); those deliveries are still queued.
func (m *Maildir) Recover(log *slog.Logger) {
	if n, err := m.CleanTmp(); err != nil {
		log.Error("cannot clean the Maildir's tmp/", "dir", m.Dir, "err", err)
	} else if n > 0 {
		log.Info("removed files a crash left in the Maildir's tmp/; their deliveries are still queued", "dir", m.Dir, "files", n)
	}
}

// CloseIdle does nothing: a Maildir keeps no connection.
func (m *Maildir) CloseIdle(time.Duration) {}

// Close does nothing: a Maildir keeps no connection.
func (m *Maildir) Close() {}

func (m *Maildir) deliverOne(name string, retry bool, from, rcpt string, msg []byte) error {
	if m.delivered(name, retry) {
		return nil
	}
	tmp := filepath.Join(m.Dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
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

// delivered reports whether the file is in new/, or, for a retry, in cur/ where a mail reader
// may have moved it (with its ":2,flags" suffix). cur/ is read only then: it can hold a whole
// mailbox, and a first attempt cannot be there. new/ is looked at even on a first attempt:
// another node sharing the queue may have written the file and died before recording it.
func (m *Maildir) delivered(name string, retry bool) bool {
	if _, err := os.Stat(filepath.Join(m.Dir, "new", name)); err == nil {
		return true
	}
	if !retry {
		return false
	}
	matches, _ := filepath.Glob(filepath.Join(m.Dir, "cur", name+"*"))
	return len(matches) > 0
}

// CleanTmp removes what a crash left in tmp/: deskgate's own half-written files, which it
// writes again from the queue. Other programs' files are left alone.
func (m *Maildir) CleanTmp() (int, error) {
	entries, err := os.ReadDir(filepath.Join(m.Dir, "tmp"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		if strings.Contains(e.Name(), ".deskgate.") && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(m.Dir, "tmp", e.Name())); err != nil {
				return removed, err
			}
			removed++
		}
	}
	return removed, nil
}
