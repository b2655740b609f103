package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// fill stores n tickets with a comment and a 20 KiB attachment each.
func fill(t *testing.T, s *Store, n int) []uint64 {
	t.Helper()
	var ids []uint64
	data := []byte(strings.Repeat("attachment bytes ", 20<<10/17))
	for i := 0; i < n; i += 100 {
		err := s.Update(context.Background(), func(tx *Tx) error {
			for j := i; j < i+100 && j < n; j++ {
				tk := &model.Ticket{Subject: fmt.Sprintf("ticket %d", j), Status: model.StatusSolved, Requester: model.Person{Email: fmt.Sprintf("u%d@customer.test", j)}}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				c := &model.Comment{Author: tk.Requester.Email, Public: true, MessageID: fmt.Sprintf("m%d@x", j), Body: strings.Repeat("text ", 400),
					Attachments: []model.Attachment{{Name: "a.bin", Size: int64(len(data))}}}
				if err := tx.AddComment(tk, c); err != nil {
					return err
				}
				if err := tx.PutAttachmentData(c.ID, 0, data); err != nil {
					return err
				}
				if err := tx.PutTicket(tk); err != nil {
					return err
				}
				ids = append(ids, tk.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestCompactGivesBackTheSpaceOfDeletedTickets(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := fill(t, s, 600)
	if _, err := Compact(dir); err == nil || !strings.Contains(err.Error(), "stop the deskgate daemon") {
		t.Fatalf("compact of an open database: %v, want a refusal", err)
	}
	for i := 0; i < len(ids); i += 2 {
		if err := s.Update(context.Background(), func(tx *Tx) error { _, err := tx.DeleteTicket(ids[i]); return err }); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// A file left by a compaction that was killed is not in the way.
	os.WriteFile(filepath.Join(dir, FileName+compactSuffix), []byte("half a database"), 0o600)
	c, err := Compact(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("600 tickets, half deleted: %d -> %d bytes", c.Before, c.After)
	if c.After > c.Before*7/10 {
		t.Errorf("compacted %d -> %d bytes; half the tickets were deleted", c.Before, c.After)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+compactSuffix)); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left behind: %v", err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.View(func(tx *Tx) error {
		if n, _ := tx.Counts(); n != 300 {
			t.Errorf("%d tickets after compacting, want 300", n)
		}
		tk, err := tx.Ticket(ids[1])
		if err != nil {
			t.Fatal(err)
		}
		cs, err := tx.Comments(tk)
		if err != nil || len(cs) != 1 || len(tx.AttachmentData(cs[0].ID, 0)) != 20<<10/17*17 {
			t.Errorf("ticket %d after compacting: %v %v", tk.ID, cs, err)
		}
		return nil
	})
	if next := s.NewIds().Ticket(); next != ids[len(ids)-1]+1 {
		t.Errorf("next ticket id after compacting %d, want %d", next, ids[len(ids)-1]+1)
	}
}

// With no room for the new file, compaction fails and the database is as it was. The disk is
// made full by a file size limit (RLIMIT_FSIZE): writes past it fail with EFBIG, as they fail
// with ENOSPC on a full disk, and Go ignores the SIGXFSZ that comes with them.
func TestCompactOnAFullDiskLeavesTheDatabaseIntact(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 300)
	s.Close()
	path := filepath.Join(dir, FileName)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := old
	limit.Cur = 1 << 20
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skipf("cannot lower the file size limit to stand in for a full disk: %v", err)
	}
	_, err = Compact(dir)
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	if err == nil || !strings.Contains(err.Error(), "unchanged") {
		t.Fatalf("compact with no room: %v, want a failure that says the database is unchanged", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Fatal("the database changed")
	}
	if _, err := os.Stat(path + compactSuffix); !os.IsNotExist(err) {
		t.Errorf("the half-written file is left: %v", err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.View(func(tx *Tx) error {
		if n, _ := tx.Counts(); n != 300 {
			t.Errorf("%d tickets after a failed compaction, want 300", n)
		}
		return nil
	})
}
