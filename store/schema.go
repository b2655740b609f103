package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// The database records the version of its layout, and each version past it is reached by a
// numbered migration run at start, in its own transaction. A database written by a newer
// deskgate is refused rather than misread.

var keySchema = []byte("schema_version")

// migrations[i] takes a database from version i to version i+1. Version 0 is the layout of the
// first releases, which recorded no version.
var migrations = []func(tx kvTx) error{
	// 1: the status index, so that listing tickets by status reads only those tickets.
	func(tx kvTx) error {
		idx, err := tx.CreateBucketIfNotExists(bucketByStatus)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketTickets).ForEach(func(k, v []byte) error {
			var st struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("ticket %d: %w", binary.BigEndian.Uint64(k), err)
			}
			return idx.Put(statusKey(st.Status, binary.BigEndian.Uint64(k)), nil)
		})
	},
	// 2: a ticket counter. Ids are now drawn by the process and an id drawn but not written is
	// skipped, so the sequence no longer counts tickets; until now no ticket was ever deleted
	// or skipped, so the sequence is the count to start from.
	func(tx kvTx) error {
		return tx.Bucket(bucketMeta).Put(keyTicketCount, itob(tx.Bucket(bucketTickets).Sequence()))
	},
	// 3: comments and deliveries are written in the binary layout (codec.go). Nothing is
	// converted (the old JSON records are still read), but a deskgate older than this could
	// not read the new ones, so the version marks the database as theirs no more.
	func(tx kvTx) error { return nil },
	// 4: a delivery counter, counted once by walking the deliveries (tickets may already have
	// been deleted with theirs under version 3).
	func(tx kvTx) error {
		n := 0
		c := tx.Bucket(bucketDeliv).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return tx.Bucket(bucketMeta).Put(keyDeliveryCount, itob(uint64(n)))
	},
	// 5: the web pages' sign-in tokens and sessions (web.go).
	func(tx kvTx) error {
		for _, b := range [][]byte{bucketSignIns, bucketWebSessions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// 6: a ticket counter per status, counted once by walking the status index; from now on
	// it changes wherever the index does.
	func(tx kvTx) error {
		n := map[string]uint64{}
		c := tx.Bucket(bucketByStatus).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if i := bytes.IndexByte(k, 0); i >= 0 {
				n[string(k[:i])]++
			}
		}
		meta := tx.Bucket(bucketMeta)
		for status, count := range n {
			if err := meta.Put(statusCountKey(status), itob(count)); err != nil {
				return err
			}
		}
		return nil
	},
	// 7: originals under plainBelow are kept as they came (originalPlain). Nothing is converted
	// (deflated originals are still read), but a deskgate older than this would refuse every
	// small original, in the API and in erase, so the version marks the database as theirs no
	// more, as version 3 did.
	func(tx kvTx) error { return nil },
}

// plainOriginalsVersion is the schema version from which small originals are kept plain.
const plainOriginalsVersion = 7

// SchemaVersion is the layout this deskgate writes.
var SchemaVersion = len(migrations)

// schemaVersion reads the database's version (0 when it has none).
func schemaVersion(tx kvTx) int {
	v := tx.Bucket(bucketMeta).Get(keySchema)
	if len(v) != 4 {
		return 0
	}
	return int(binary.BigEndian.Uint32(v))
}

// migrate brings the database to SchemaVersion, one migration per transaction, and returns
// the version it found.
func migrate(be backend) (from int, err error) {
	if err := be.view(0, func(tx kvTx) error { from = schemaVersion(tx); return nil }); err != nil {
		return 0, err
	}
	if from > SchemaVersion {
		return from, fmt.Errorf("the database has schema version %d, newer than this deskgate's %d: run the deskgate that wrote it, or a newer one", from, SchemaVersion)
	}
	for v := from; v < SchemaVersion; v++ {
		err := updateDurably(be, func(tx kvTx) error {
			// Another node may have run it meanwhile (PostgreSQL): update runs alone.
			if schemaVersion(tx) > v {
				return nil
			}
			if err := migrations[v](tx); err != nil {
				return err
			}
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, uint32(v+1))
			return tx.Bucket(bucketMeta).Put(keySchema, b)
		})
		if err != nil {
			return from, fmt.Errorf("migration to schema version %d: %w", v+1, err)
		}
	}
	return from, nil
}

// statusKey is the status index's key: the status, a zero byte, the ticket id.
func statusKey(status string, id uint64) []byte {
	k := make([]byte, 0, len(status)+9)
	k = append(k, status...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

// MigratedFrom is the schema version the store had when it was opened.
func (s *Store) MigratedFrom() int { return s.migratedFrom }
