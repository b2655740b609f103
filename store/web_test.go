package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestSignInTokensAreSingleUse(t *testing.T) { eachBackend(t, testSignInTokensAreSingleUse) }

func testSignInTokensAreSingleUse(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	good, _ := NewWebToken()
	old, _ := NewWebToken()
	if len(good) != 43 || good == old {
		t.Fatalf("tokens %q %q: want 43 characters of 256 random bits, different each time", good, old)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.PutSignIn(good, "alice@example.com", now.Add(SignInLifetime)); err != nil {
			return err
		}
		return tx.PutSignIn(old, "alice@example.com", now.Add(-time.Second))
	})
	if err != nil {
		t.Fatal(err)
	}
	consume := func(token string) (string, error) {
		var email string
		err := s.Update(ctx, func(tx *Tx) error {
			var err error
			email, err = tx.ConsumeSignIn(token, now)
			if errors.Is(err, ErrExpired) {
				// The caller commits the spending of an expired token, as the web page will.
				return nil
			}
			return err
		})
		if err == nil && email == "" {
			err = ErrExpired
		}
		return email, err
	}
	if email, err := consume(good); err != nil || email != "alice@example.com" {
		t.Errorf("first consume = %q, %v; want alice@example.com", email, err)
	}
	if email, err := consume(good); !errors.Is(err, ErrNotFound) {
		t.Errorf("second consume = %q, %v; want ErrNotFound", email, err)
	}
	if email, err := consume(old); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token = %q, %v; want ErrExpired", email, err)
	}
	if email, err := consume(old); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired token, once tried, = %q, %v; want ErrNotFound", email, err)
	}
	if email, err := consume("not-a-token"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown token = %q, %v", email, err)
	}

	// Only the hash is stored: the token itself is nowhere in the bucket.
	s.View(func(tx *Tx) error {
		return tx.tx.Bucket(bucketSignIns).ForEach(func(k, v []byte) error {
			if string(k) == good || string(v) == good {
				t.Error("a sign-in token is stored as it is")
			}
			return nil
		})
	})
}

func TestWebSessions(t *testing.T) { eachBackend(t, testWebSessions) }

func testWebSessions(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	live, _ := NewWebToken()
	stale, _ := NewWebToken()
	bob, _ := NewWebToken()
	err = s.Update(ctx, func(tx *Tx) error {
		// The expired one last: each put sweeps what has expired before it.
		for _, p := range []struct {
			id string
			ws WebSession
		}{
			{live, WebSession{Email: "alice@example.com", Created: now, Expires: now.Add(12 * time.Hour)}},
			{bob, WebSession{Email: "Bob@example.com", Created: now, Expires: now.Add(time.Hour)}},
			{stale, WebSession{Email: "alice@example.com", Created: now.Add(-13 * time.Hour), Expires: now.Add(-time.Hour)}},
		} {
			if err := tx.PutWebSession(p.id, p.ws); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(id string) (WebSession, error) {
		var ws WebSession
		err := s.View(func(tx *Tx) error {
			var err error
			ws, err = tx.WebSession(id, now)
			return err
		})
		return ws, err
	}
	// A session outlives the process: every node (and the next start) knows it.
	s.Close()
	if s, err = open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ws, err := lookup(live)
	if err != nil || ws.Email != "alice@example.com" || !ws.Created.Equal(now) || !ws.Expires.Equal(now.Add(12*time.Hour)) {
		t.Errorf("live session = %+v, %v", ws, err)
	}
	if ws, err := lookup(stale); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired session = %+v, %v; want ErrNotFound", ws, err)
	}
	if ws, err := lookup("forged"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown session = %+v, %v", ws, err)
	}

	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteWebSession(live) }); err != nil {
		t.Fatal(err)
	}
	if _, err := lookup(live); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted session still found: %v", err)
	}

	// The sweep removes what has expired and keeps the rest.
	var pruned int
	s.Update(ctx, func(tx *Tx) error { pruned, err = tx.PruneWeb(now); return err })
	if pruned != 1 {
		t.Errorf("pruned %d, want the 1 expired session", pruned)
	}
	if _, err := lookup(bob); err != nil {
		t.Errorf("pruning took a live session: %v", err)
	}
	var n int
	s.Update(ctx, func(tx *Tx) error { n, err = tx.DeleteWebSessionsOf("bob@EXAMPLE.com"); return err })
	if _, err := lookup(bob); n != 1 || !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteWebSessionsOf removed %d, lookup after: %v", n, err)
	}
}

// A desk from before the web pages (schema 4) gets their buckets at its next start.
func TestWebBucketsComeWithTheMigration(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bucketSignIns)
		tx.DeleteBucket(bucketWebSessions)
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 4})
	})
	db.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MigratedFrom() != 4 {
		t.Errorf("migrated from %d, want 4", s.MigratedFrom())
	}
	id, _ := NewWebToken()
	err = s.Update(context.Background(), func(tx *Tx) error {
		return tx.PutWebSession(id, WebSession{Email: "a@example.com", Created: time.Now(), Expires: time.Now().Add(time.Hour)})
	})
	if err != nil {
		t.Errorf("a session in a migrated desk: %v", err)
	}
}
