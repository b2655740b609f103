package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

// BenchmarkNewTicketCommit writes what a new ticket writes (ticket, comment, original, the
// Message-ID index, its acknowledgement's delivery) in fsync'd commits of batch tickets each,
// and reports the process's CPU per ticket, system calls included: the part of a commit's
// cost that is per commit shows as the difference between batch sizes. Set
// DESKGATE_BENCH_DIR to a directory on the disk under test (the default is the test's
// temporary directory, which may be tmpfs).
func BenchmarkNewTicketCommit(b *testing.B) {
	for _, batch := range []int{1, 3, 6, 12} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			dir := b.TempDir()
			if d := os.Getenv("DESKGATE_BENCH_DIR"); d != "" {
				var err error
				if dir, err = os.MkdirTemp(d, "commit-bench"); err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
			}
			s, err := Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			original := PackOriginal([]byte(strings.Repeat("a line of a customer's question\r\n", 40)))
			ack := []byte(strings.Repeat("a line of the acknowledgement\r\n", 48))
			// A desk that is not empty: the index and the buckets have a few levels.
			for range 2000 / batch {
				newTickets(b, s, batch, original, ack)
			}
			var before syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			n := 0
			for n < b.N {
				newTickets(b, s, batch, original, ack)
				n += batch
			}
			b.StopTimer()
			var after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/ticket")
		})
	}
}

func newTickets(b *testing.B, s *Store, batch int, original, ack []byte) {
	ids := s.NewIds()
	err := s.Update(context.Background(), func(tx *Tx) error {
		for range batch {
			random := make([]byte, 16)
			rand.Read(random)
			tk := &model.Ticket{Subject: "my printer is on fire", Status: model.StatusNew, Requester: model.Person{Email: "jane@customer.test", Name: "Jane"}}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			c := &model.Comment{Author: "jane@customer.test", Public: true, MessageID: "<" + hex.EncodeToString(random) + "@customer.test>", Body: "it is on fire"}
			if err := tx.AddComment(tk, c); err != nil {
				return err
			}
			if err := tx.PutOriginal(c.ID, original); err != nil {
				return err
			}
			d := &Delivery{ID: ids.Delivery(), TicketID: tk.ID, SourceID: c.ID, State: model.DeliveryQueued, NextTry: time.Now(),
				MessageID: fmt.Sprintf("%x%s@desk.test", time.Now().UnixMilli(), hex.EncodeToString(random))}
			if err := tx.QueueDelivery(d, ack); err != nil {
				return err
			}
			if err := tx.IndexSentMessageID(d.MessageID, MessageRef{TicketID: tk.ID, SourceID: c.ID, Delivery: d.ID}); err != nil {
				return err
			}
			if err := tx.PutTicket(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
