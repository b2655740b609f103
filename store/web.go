package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// The web pages' sign-in links and sessions. Both are bearer secrets handed to a browser or a
// mailbox, so the store keeps only their SHA-256: a copy of the database (a backup, a
// PostgreSQL replica) signs nobody in. They live in the store rather than in a node's memory so
// that every node on PostgreSQL knows them.

var (
	bucketSignIns     = []byte("web_sign_ins")
	bucketWebSessions = []byte("web_sessions")
)

// SignInLifetime is how long a mailed sign-in link stays good.
const SignInLifetime = 15 * time.Minute

// ErrExpired is a sign-in token that existed but is past its time; it is spent all the same.
var ErrExpired = errors.New("expired")

// WebSession is a signed-in browser: who, and until when.
type WebSession struct {
	Email   string    `json:"email"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

type signIn struct {
	Email   string    `json:"email"`
	Expires time.Time `json:"expires"`
}

// NewWebToken draws a sign-in token or session id: 256 random bits, base64url without
// padding (43 characters), fit for a URL path and a cookie alike.
func NewWebToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// webKey is the stored key of a token: its SHA-256. Whatever string a browser sends is
// hashed, so that a lookup costs the same whether it exists or not.
func webKey(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// PutSignIn records a sign-in token for email, good until expires (now + SignInLifetime).
// It sweeps expired tokens and sessions on the way, which keeps both buckets small without
// a timer.
func (t *Tx) PutSignIn(token, email string, expires time.Time) error {
	if _, err := t.PruneWeb(expires.Add(-SignInLifetime - expiredKept)); err != nil {
		return err
	}
	return putJSON(t.tx.Bucket(bucketSignIns), webKey(token), signIn{Email: email, Expires: expires.UTC()})
}

// expiredKept is how long an expired sign-in token is kept before a sweep takes it: opened
// within that time, its link says "expired" (and counts as such), not "unknown".
const expiredKept = 24 * time.Hour

// SignInOpen reports whether token is a sign-in token that can still be spent at now. It only
// reads: the mailed link's page asks it before it offers a button that would not work.
func (t *Tx) SignInOpen(token string, now time.Time) bool {
	var rec signIn
	ok, err := decodeStored(t.tx.Bucket(bucketSignIns).Get(webKey(token)), &rec)
	return err == nil && ok && now.Before(rec.Expires)
}

// ConsumeSignIn spends a sign-in token and returns the address it was made for. The token is
// deleted in this transaction, so a second consume finds nothing: ErrNotFound. A token past
// its time is deleted too and gives ErrExpired. Call it in an Update.
func (t *Tx) ConsumeSignIn(token string, now time.Time) (string, error) {
	b := t.tx.Bucket(bucketSignIns)
	key := webKey(token)
	var rec signIn
	ok, err := decodeStored(b.Get(key), &rec)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ErrNotFound
	}
	if err := b.Delete(key); err != nil {
		return "", err
	}
	if !now.Before(rec.Expires) {
		return "", ErrExpired
	}
	return rec.Email, nil
}

// PutWebSession records a session under its id (the cookie's value). Like PutSignIn it sweeps
// what has expired.
func (t *Tx) PutWebSession(id string, s WebSession) error {
	if _, err := t.PruneWeb(s.Created.Add(-expiredKept)); err != nil {
		return err
	}
	s.Created, s.Expires = s.Created.UTC(), s.Expires.UTC()
	return putJSON(t.tx.Bucket(bucketWebSessions), webKey(id), s)
}

// WebSession returns the session with that id, or ErrNotFound when there is none or it has
// expired by now. It only reads, so it works in a View.
func (t *Tx) WebSession(id string, now time.Time) (WebSession, error) {
	var s WebSession
	raw := t.tx.Bucket(bucketWebSessions).Get(webKey(id))
	if raw == nil {
		return s, ErrNotFound
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return WebSession{}, err
	}
	if !now.Before(s.Expires) {
		return WebSession{}, ErrNotFound
	}
	return s, nil
}

// DeleteWebSession ends a session (sign-out, or an address no longer in agents). Deleting
// one that is not there is no error.
func (t *Tx) DeleteWebSession(id string) error {
	return t.tx.Bucket(bucketWebSessions).Delete(webKey(id))
}

// DeleteWebSessionsOf ends every session and spends every sign-in token of email (compared
// case-insensitively), for erasing a person. It returns how many records went.
func (t *Tx) DeleteWebSessionsOf(email string) (int, error) {
	return t.sweepWeb(func(e string, _ time.Time) bool { return strings.EqualFold(e, email) })
}

// PruneWeb deletes the sign-in tokens and sessions expired by now and returns how many.
// Sessions are few (agents times their browsers) and tokens bounded by the sign-in rate
// limits, so a walk of both is cheap.
func (t *Tx) PruneWeb(now time.Time) (int, error) {
	return t.sweepWeb(func(_ string, expires time.Time) bool { return !now.Before(expires) })
}

func (t *Tx) sweepWeb(drop func(email string, expires time.Time) bool) (int, error) {
	n := 0
	for _, name := range [][]byte{bucketSignIns, bucketWebSessions} {
		b := t.tx.Bucket(name)
		var gone [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec signIn // a WebSession's email and expires decode the same
			if err := json.Unmarshal(v, &rec); err != nil || drop(rec.Email, rec.Expires) {
				// An unreadable record can never sign anyone in: it goes too.
				gone = append(gone, append([]byte(nil), k...))
			}
		}
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return n, err
			}
		}
		n += len(gone)
	}
	return n, nil
}
