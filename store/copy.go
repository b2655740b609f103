package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// OpenURL opens the store a `store copy` URL names: bbolt:DIR (the data_dir holding
// deskgate.db) or postgres://… (the password from PGPASSWORD or ~/.pgpass). A bbolt store that
// does not exist is made only when create is set.
func OpenURL(u string, create bool) (*Store, error) {
	switch {
	case strings.HasPrefix(u, "bbolt:"):
		dir := strings.TrimPrefix(u, "bbolt:")
		if dir == "" {
			return nil, errors.New("bbolt: needs the data directory, as in bbolt:/var/lib/deskgate")
		}
		if _, err := os.Stat(filepath.Join(dir, FileName)); !create && err != nil {
			return nil, fmt.Errorf("no desk in %s: %w", dir, err)
		}
		return Open(dir)
	case IsPostgresURL(u):
		return OpenPostgres(u, "")
	}
	return nil, fmt.Errorf("%q: want bbolt:DIR or postgres://…", u)
}

// Copied says what CopyAll copied.
type Copied struct {
	// Records per bucket.
	Records map[string]int
	Tickets int
}

// copyBatch bounds one write transaction of a copy, in records and in bytes.
const copyBatch, copyBatchBytes = 2000, 32 << 20

// copyBuckets are the buckets a desk has, in the order they are copied.
var copyBuckets = append(append([][]byte{}, allBuckets...), bucketByStatus)

// CopyAll copies every record of src into dst, which must hold no tickets yet: tickets,
// comments, events, attachments, originals, the Message-ID index, the outbound queue with its
// messages, the ids' sequences and the secret behind reply addresses, so that dst answers the
// same reply addresses. src is read on one snapshot, so a desk on PostgreSQL can be copied while
// its nodes run; the copy holds what was committed when it began. Nothing else may use dst
// while it is copied into.
func CopyAll(src, dst *Store, progress func(bucket string, n int)) (Copied, error) {
	out := Copied{Records: map[string]int{}}
	var tickets, comments int
	src.View(func(tx *Tx) error { tickets, comments = tx.Counts(); return nil })
	if tickets == 0 && comments == 0 {
		return out, errors.New("the source holds no tickets: is it the right store?")
	}
	dst.View(func(tx *Tx) error { tickets, comments = tx.Counts(); return nil })
	if tickets > 0 || comments > 0 {
		return out, fmt.Errorf("the destination already holds %d tickets and %d comments: copy into an empty store", tickets, comments)
	}
	err := src.be.view(0, func(stx kvTx) error {
		for _, name := range copyBuckets {
			var keys, values [][]byte
			size := 0
			flush := func() error {
				if len(keys) == 0 {
					return nil
				}
				err := updateDurably(dst.be, func(dtx kvTx) error {
					b, err := dtx.CreateBucketIfNotExists(name)
					if err != nil {
						return err
					}
					for i := range keys {
						if err := b.Put(keys[i], values[i]); err != nil {
							return err
						}
					}
					return nil
				})
				out.Records[string(name)] += len(keys)
				if progress != nil {
					progress(string(name), out.Records[string(name)])
				}
				keys, values, size = keys[:0], values[:0], 0
				return err
			}
			c := stx.Bucket(name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				keys = append(keys, append([]byte(nil), k...))
				values = append(values, append([]byte{}, v...))
				size += len(k) + len(v)
				if len(keys) == copyBatch || size >= copyBatchBytes {
					if err := flush(); err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
				}
			}
			if err := flush(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			seq := stx.Bucket(name).Sequence()
			if err := updateDurably(dst.be, func(dtx kvTx) error {
				b, err := dtx.CreateBucketIfNotExists(name)
				if err != nil {
					return err
				}
				return b.SetSequence(seq)
			}); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	// dst now has src's secret and sequences; it goes on from them.
	err = dst.be.view(0, func(tx kvTx) error {
		dst.secret = append([]byte(nil), tx.Bucket(bucketMeta).Get(keySecret)...)
		dst.loadCounters(tx)
		return nil
	})
	dst.View(func(tx *Tx) error { out.Tickets, _ = tx.Counts(); return nil })
	return out, err
}
