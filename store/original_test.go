package store

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
)

// A comment's original comes back byte for byte whatever its size: small mails are kept as
// they came, larger ones deflated, and originals deflated by earlier versions still read.
func TestOriginalsComeBackAsReceived(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		small := []byte("Subject: thanks\r\n\r\nIt works now.\r\n")
		large := []byte("Subject: logs\r\n\r\n" + strings.Repeat("2026-12-04 error: disk full on /var\r\n", 200))
		edge := bytes.Repeat([]byte("x"), plainBelow)
		old := deflateOriginal(large)
		if len(PackOriginal(small)) != len(small)+1 {
			t.Errorf("a %d-byte original was packed into %d bytes; it should be kept as it came", len(small), len(PackOriginal(small)))
		}
		if n := len(PackOriginal(large)); n >= len(large)/2 {
			t.Errorf("a %d-byte log was packed into %d bytes; it should be deflated", len(large), n)
		}
		want := map[uint64][]byte{1: small, 2: large, 3: edge, 4: large}
		err = s.Update(context.Background(), func(tx *Tx) error {
			for _, cid := range []uint64{1, 2, 3} {
				if err := tx.PutOriginal(cid, PackOriginal(want[cid])); err != nil {
					return err
				}
			}
			return tx.PutOriginal(4, old)
		})
		if err != nil {
			t.Fatal(err)
		}
		s.View(func(tx *Tx) error {
			for cid, w := range want {
				got, ok, err := tx.Original(cid)
				if err != nil || !ok || !bytes.Equal(got, w) {
					t.Errorf("original %d: %d bytes, ok %v, err %v; want the %d bytes stored", cid, len(got), ok, err, len(w))
				}
			}
			return nil
		})
	})
}

// A database that may hold plain originals says so in its schema version, so that a deskgate
// from before them refuses to open it rather than failing on every small original, in the API
// and in erase, after a downgrade or on an old node of a cluster.
func TestPlainOriginalsMarkTheDatabaseNewer(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		err = s.Update(context.Background(), func(tx *Tx) error {
			return tx.PutOriginal(1, PackOriginal([]byte("Subject: small\r\n\r\nhi\r\n")))
		})
		if err != nil {
			t.Fatal(err)
		}
		s.View(func(tx *Tx) error {
			if v := schemaVersion(tx.tx); v < plainOriginalsVersion {
				t.Errorf("a database with plain originals records schema version %d; a deskgate of version %d would open it and misread them", v, plainOriginalsVersion-1)
			}
			return nil
		})
	})
}

// BenchmarkPackOriginal is the cost of readying a received mail for the store, by its size.
func BenchmarkPackOriginal(b *testing.B) {
	for _, n := range []int{1300, 8000} {
		raw := []byte("Subject: a question\r\n\r\n" + strings.Repeat("Please reset my password, it expired yesterday.\r\n", n/50))
		b.Run(strconv.Itoa(len(raw)), func(b *testing.B) {
			for b.Loop() {
				PackOriginal(raw)
			}
		})
	}
}
