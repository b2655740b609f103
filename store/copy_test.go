package store

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/internal/pgtest"
)

// A desk copied from bbolt to PostgreSQL and back keeps every record, the secret behind reply
// addresses and the ids' sequences; a copy into a store that holds tickets is refused.
func TestCopyBetweenStoresKeepsEverything(t *testing.T) {
	src, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tid, cid := addTicketWithComment(t, src, "<copy@customer.test>", "<older@customer.test>")
	ids := src.NewIds()
	did := ids.Delivery()
	err = src.Update(context.Background(), func(tx *Tx) error {
		if err := tx.PutOriginal(cid, PackOriginal([]byte("Subject: copy\r\n\r\nthe original\r\n"))); err != nil {
			return err
		}
		if err := tx.PutAttachmentData(cid, 0, []byte("PDF")); err != nil {
			return err
		}
		return tx.QueueDelivery(&Delivery{ID: did, TicketID: tid, State: model.DeliveryQueued, NextTry: time.Now()}, []byte("queued message"))
	})
	if err != nil {
		t.Fatal(err)
	}

	url := pgtest.Database(t)
	pg, err := OpenPostgres(url, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := CopyAll(src, pg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pg.Close()
	if got.Tickets != 1 || got.Records["comments"] != 1 || got.Records["delivery_messages"] != 1 {
		t.Errorf("copied %+v", got)
	}
	pg, err = OpenPostgres(url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	check := func(name string, s *Store) {
		t.Helper()
		if !bytes.Equal(s.Secret(), src.Secret()) {
			t.Errorf("%s: the secret differs, so old reply addresses would not be recognised", name)
		}
		s.View(func(tx *Tx) error {
			tk, err := tx.Ticket(tid)
			if err != nil {
				t.Fatalf("%s: ticket: %v", name, err)
			}
			cs, _ := tx.Comments(tk)
			if len(cs) != 1 || cs[0].Body != "hello" {
				t.Errorf("%s: comments %+v", name, cs)
			}
			if ref, ok := tx.MessageID("<older@customer.test>"); !ok || ref.TicketID != tid {
				t.Errorf("%s: the Message-ID index lost a reference", name)
			}
			if raw, ok, _ := tx.Original(cid); !ok || !strings.Contains(string(raw), "the original") {
				t.Errorf("%s: original %q", name, raw)
			}
			if string(tx.AttachmentData(cid, 0)) != "PDF" {
				t.Errorf("%s: attachment lost", name)
			}
			if due := tx.DueDeliveries(time.Now(), 10); len(due) != 1 || due[0] != did || string(tx.DeliveryMessage(did)) != "queued message" {
				t.Errorf("%s: queue %v", name, due)
			}
			if list, _ := tx.ListTickets(model.StatusNew, 10, 0); len(list) != 1 {
				t.Errorf("%s: the status index lists %d tickets", name, len(list))
			}
			return nil
		})
		if next := s.NewIds().Ticket(); next <= tid {
			t.Errorf("%s: the next ticket id is %d, not past %d", name, next, tid)
		}
	}
	check("postgres", pg)

	back, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if _, err := CopyAll(pg, back, nil); err != nil {
		t.Fatal(err)
	}
	check("back on bbolt", back)
	if _, err := CopyAll(src, back, nil); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("a copy into a store with tickets: %v", err)
	}
}
