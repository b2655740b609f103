package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/deskgate/deskgate/gateway/metrics"
)

// On PostgreSQL each bucket is a table deskgate_<bucket> (key bytea primary key, value bytea)
// with a sequence deskgate_<bucket>_seq for its ids. The store's logic is the same as on bbolt:
// the records, the indexes and the migrations are the buckets'. What PostgreSQL adds is that
// several deskgate nodes share them:
//
//   - Writes are serial across the nodes, as they are within one process on bbolt: each write
//     transaction takes one advisory lock first. Reads and plans run on snapshots beside it
//     (REPEATABLE READ), so the lock is held only while the planned records are written.
//   - Ids come from the sequences, unique across the nodes.
//   - The Message-ID index is the table deskgate_message_ids, whose primary key is the
//     normalised Message-ID; with writes serial, a message that reached two nodes at once is
//     stored by the first write and found by the second (its plan no longer holds).
//   - The outbound queue is shared: a node claims a due delivery with a lease row (Claim)
//     before it sends it, and a committed change to the queue is announced with NOTIFY.

// pgWriteLock is the advisory lock every write transaction holds ("deskgate" in ASCII).
const pgWriteLock = 0x6465736b67617465

// pgQueueChannel is the NOTIFY channel a committed change to the outbound queue is announced on.
const pgQueueChannel = "deskgate_queue"

// leaseTime is how long a claimed delivery stays with its node without a renewal; a node
// renews its leases every leaseTime/4, so a live node keeps them and a dead node's are taken
// over leaseTime after its last renewal.
const leaseTime = 20 * time.Second

// ErrUnavailable wraps a failure to reach the database: the operation may be tried again later.
var ErrUnavailable = errors.New("store unavailable")

type pgBackend struct {
	pool *pgxpool.Pool
	// aux serves the short statements that run beside the transactions: drawing ids,
	// claiming and renewing leases. A plan holds a connection of pool while it draws ids, so
	// drawing them from pool too could leave every connection waiting for another.
	aux *pgxpool.Pool
	// conn is the configuration of the connection that listens for NOTIFY.
	conn *pgx.ConnConfig
	// node names this process in the leases it holds.
	node string
	// redacted is the URL without its password, for the log.
	redacted string

	mu      sync.Mutex
	held    map[uint64]bool
	onQueue func()
	stop    context.CancelFunc
	stopped sync.WaitGroup
}

// IsPostgresURL says whether url names a PostgreSQL store.
func IsPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// PostgresConfig parses url and adds the password read from passwordFile (when set). Without
// one, the password comes from PGPASSWORD or ~/.pgpass, as for every PostgreSQL client. A
// password written into the URL itself is refused: the URL lives in the YAML file. Its errors
// name the config key at fault.
func PostgresConfig(rawURL, passwordFile string) (*pgxpool.Config, error) {
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			return nil, errors.New("store.url: holds a password: put it in store.password_file (or PGPASSWORD) instead")
		}
	}
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	if passwordFile != "" {
		raw, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("store.password_file: %w", err)
		}
		cfg.ConnConfig.Password = strings.TrimRight(string(raw), "\r\n")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if !strings.Contains(rawURL, "pool_max_conns") {
		// Plans run on the sessions' goroutines, each on a connection of its own.
		cfg.MaxConns = 16
	}
	return cfg, nil
}

// OpenPostgres opens the store in the PostgreSQL database at url, making its tables on first
// use and running the migrations.
func OpenPostgres(rawURL, passwordFile string) (*Store, error) {
	cfg, err := PostgresConfig(rawURL, passwordFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store.url: cannot reach PostgreSQL at %s: %w", Redact(rawURL), err)
	}
	auxCfg := cfg.Copy()
	auxCfg.MaxConns = 4
	aux, err := pgxpool.NewWithConfig(context.Background(), auxCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store.url: %w", err)
	}
	host, _ := os.Hostname()
	rnd := make([]byte, 4)
	rand.Read(rnd)
	be := &pgBackend{pool: pool, aux: aux, conn: cfg.ConnConfig.Copy(), node: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(rnd)), redacted: Redact(rawURL), held: map[uint64]bool{}}
	if err := be.ensureSharedTables(ctx); err != nil {
		pool.Close()
		aux.Close()
		return nil, fmt.Errorf("store.url: %w", err)
	}
	s := &Store{be: be}
	if err := s.start(); err != nil {
		pool.Close()
		aux.Close()
		return nil, fmt.Errorf("store %s: %w", Redact(rawURL), err)
	}
	lctx, stop := context.WithCancel(context.Background())
	be.stop = stop
	be.stopped.Add(2)
	go be.listen(lctx)
	go be.renew(lctx)
	return s, nil
}

// CheckPostgres connects to the database at url as the daemon would, and returns the server's
// version; its error says what failed (the URL, the password file, the connection, the login).
func CheckPostgres(rawURL, passwordFile string) (string, error) {
	cfg, err := PostgresConfig(rawURL, passwordFile)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return "", fmt.Errorf("store.url: cannot connect to %s: %w", Redact(rawURL), err)
	}
	defer conn.Close(context.Background())
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return "", fmt.Errorf("store.url: %s answers but not to a query: %w", Redact(rawURL), err)
	}
	return version, nil
}

// Redact is url without its password, for messages.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// ensureSharedTables makes the tables the nodes share beside the buckets: the delivery leases and
// the per-sender counts (limits.max_mails_per_sender_hour), one row per sender and minute.
func (b *pgBackend) ensureSharedTables(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS deskgate_leases (
		delivery bigint PRIMARY KEY,
		node text NOT NULL,
		until timestamptz NOT NULL);
		CREATE TABLE IF NOT EXISTS deskgate_flush (
		slot integer PRIMARY KEY,
		n bigint NOT NULL);
		CREATE TABLE IF NOT EXISTS deskgate_sender_hits (
		sender text NOT NULL,
		minute timestamptz NOT NULL,
		hits integer NOT NULL,
		PRIMARY KEY (sender, minute))`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// Two nodes made it at the same moment; it exists.
		return nil
	}
	return err
}

func (b *pgBackend) close() error {
	if b.stop != nil {
		b.stop()
		b.stopped.Wait()
	}
	b.releaseAll()
	b.pool.Close()
	b.aux.Close()
	return nil
}

// unavailable marks err as the database's absence when it is one (not a constraint or a
// syntax error, which would be deskgate's own bug).
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !strings.HasPrefix(pgErr.Code, "08") && !strings.HasPrefix(pgErr.Code, "57") && !strings.HasPrefix(pgErr.Code, "53") {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// A transaction costs round trips, and on a busy machine each one costs a few hundred
// microseconds of waiting for PostgreSQL's process to be scheduled. So BEGIN (and the write
// lock) go in one batch with the transaction's first query, the reads a write transaction
// checks go in one batch (prefetch), and the writes, the NOTIFY and the COMMIT in another.

// opTimeout bounds what a mail or an action waits for PostgreSQL: a database that stopped
// answering without closing its connections (a host frozen, a network cut) gets the client a
// 451 after this long, instead of holding its session until the TCP keepalive notices.
const opTimeout = 30 * time.Second

func opContext() (context.Context, context.CancelFunc) { return limitContext(opTimeout) }

// limitContext bounds an operation by limit (0: no bound).
func limitContext(limit time.Duration) (context.Context, context.CancelFunc) {
	if limit > 0 {
		return context.WithTimeout(context.Background(), limit)
	}
	return context.WithCancel(context.Background())
}

func (b *pgBackend) update(limit time.Duration, fn func(kvTx) error) (func() error, error) {
	ctx, cancel := limitContext(limit)
	defer cancel()
	pc, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	// A connection released inside a transaction is closed by the pool, never reused.
	defer pc.Release()
	t := &pgTx{ctx: ctx, conn: pc.Conn(), write: true, b: b, beginSQL: "BEGIN ISOLATION LEVEL READ COMMITTED"}
	ferr := fn(t)
	if t.err == nil && ferr == nil {
		t.commit()
	}
	if t.err != nil || ferr != nil {
		t.rollback()
	}
	if t.err != nil {
		return nil, unavailable(t.err)
	}
	if ferr != nil {
		return nil, ferr
	}
	return b.flushed, nil
}

// The write lock is held from a transaction's first statement to its commit; were the commit
// to wait for the disk, every node would wait for every other's fsync in turn. So a write
// transaction commits without waiting (synchronous_commit off, which changes when the commit
// reaches the disk, not what it contains or who sees it), and flushed then makes it durable
// outside the lock: a transaction that writes and commits with synchronous_commit on waits
// until the log is on disk (and on a synchronous standby) up to its own commit record, which
// lies after the write's. (One that writes nothing commits without flushing, even when it was
// given an id, hence the row it changes: one of flushSlots, picked at random so that flushes
// running at once seldom wait for each other's row.) Callers answer only after that. Should
// PostgreSQL die in between, the write is lost with everything written after it, and its
// callers get an error.
func (b *pgBackend) flushed() error {
	ctx, cancel := opContext()
	defer cancel()
	_, err := b.pool.Exec(ctx, `INSERT INTO deskgate_flush (slot, n) VALUES ($1, 1)
		ON CONFLICT (slot) DO UPDATE SET n = deskgate_flush.n + 1`, mrand.IntN(flushSlots))
	return unavailable(err)
}

const flushSlots = 64

func (b *pgBackend) view(limit time.Duration, fn func(kvTx) error) error {
	ctx, cancel := limitContext(limit)
	defer cancel()
	pc, err := b.pool.Acquire(ctx)
	if err != nil {
		return unavailable(err)
	}
	defer pc.Release()
	t := &pgTx{ctx: ctx, conn: pc.Conn(), b: b, beginSQL: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"}
	ferr := fn(t)
	t.rollback()
	if t.err != nil {
		return unavailable(t.err)
	}
	return ferr
}

// send sends what queue puts in a batch, after BEGIN (and the write lock) when the transaction
// has not begun yet, in one round trip; the results it returns start at queue's first.
func (t *pgTx) send(queue func(b *pgx.Batch)) (pgx.BatchResults, error) {
	if t.err != nil {
		return nil, t.err
	}
	b := &pgx.Batch{}
	pre := 0
	if !t.begun {
		b.Queue(t.beginSQL)
		pre++
		if t.write {
			b.Queue("SELECT pg_advisory_xact_lock($1)", int64(pgWriteLock))
			pre++
		}
	}
	queue(b)
	br := t.conn.SendBatch(t.ctx, b)
	t.begun = true
	for i := 0; i < pre; i++ {
		if _, err := br.Exec(); err != nil {
			br.Close()
			t.fail(err)
			return nil, err
		}
	}
	if pre == 2 {
		t.locked = time.Now()
	}
	return br, nil
}

// exec runs one statement in the transaction.
func (t *pgTx) exec(sql string, args ...any) error {
	br, err := t.send(func(b *pgx.Batch) { b.Queue(sql, args...) })
	if err != nil {
		return err
	}
	_, err = br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.fail(err)
	}
	return err
}

// commit sends the writes held in memory, the NOTIFY that wakes the relays when the queue
// changed, and COMMIT, in one round trip.
func (t *pgTx) commit() {
	ops := t.dirtyOps()
	if len(ops) == 0 && !t.begun {
		return // read nothing, wrote nothing
	}
	br, err := t.send(func(b *pgx.Batch) {
		for _, op := range ops {
			op(b)
		}
		if t.queueTouched {
			b.Queue("SELECT pg_notify($1, '')", pgQueueChannel)
		}
		b.Queue("SET LOCAL synchronous_commit TO OFF")
		b.Queue("COMMIT")
	})
	if err != nil {
		return
	}
	if err := br.Close(); err != nil {
		t.fail(err)
		return
	}
	t.begun = false
	if !t.locked.IsZero() {
		metrics.StoreWriteLockSeconds.Observe(time.Since(t.locked).Seconds())
	}
}

func (t *pgTx) rollback() {
	if !t.begun || t.conn.IsClosed() {
		return
	}
	if _, err := t.conn.Exec(t.ctx, "ROLLBACK"); err == nil {
		t.begun = false
	}
}

// pgCounter draws ids from a bucket's sequence.
type pgCounter struct {
	b   *pgBackend
	seq string
	err atomic.Pointer[error]
}

func (b *pgBackend) counter(_ kvTx, bucket []byte) idCounter {
	return &pgCounter{b: b, seq: tableOf(bucket) + "_seq"}
}

func (c *pgCounter) draw() uint64 {
	var id int64
	ctx, cancel := opContext()
	defer cancel()
	if err := c.b.aux.QueryRow(ctx, "SELECT nextval($1::regclass)", c.seq).Scan(&id); err != nil {
		err = unavailable(err)
		c.err.Store(&err)
		return 0
	}
	return uint64(id)
}

func (b *pgBackend) drawTogether(buckets ...[]byte) []uint64 {
	calls := make([]string, len(buckets))
	for i, bucket := range buckets {
		calls[i] = fmt.Sprintf("nextval('%s_seq')", tableOf(bucket))
	}
	ctx, cancel := opContext()
	defer cancel()
	raw := make([]int64, len(buckets))
	dst := make([]any, len(buckets))
	for i := range raw {
		dst[i] = &raw[i]
	}
	if err := b.aux.QueryRow(ctx, "SELECT "+strings.Join(calls, ", ")).Scan(dst...); err != nil {
		return nil // drawn one by one instead, which records the failure
	}
	ids := make([]uint64, len(raw))
	for i, id := range raw {
		ids[i] = uint64(id)
	}
	return ids
}

func (c *pgCounter) use(b kvBucket, id uint64) error {
	if id == 0 {
		if err := c.err.Load(); err != nil {
			return *err
		}
		return errNoID
	}
	return nil
}

var bucketName = regexp.MustCompile(`^[a-z_]+$`)

// tableOf is the table that holds bucket. Bucket names are the store's own constants.
func tableOf(bucket []byte) string {
	if !bucketName.Match(bucket) {
		panic(fmt.Sprintf("store: bucket name %q", bucket))
	}
	return "deskgate_" + string(bucket)
}

// pgTx is one transaction. A write transaction keeps what it wrote in memory and sends it in
// one batch at commit (or before a cursor needs the table); reads see those writes first.
type pgTx struct {
	ctx   context.Context
	conn  *pgx.Conn
	b     *pgBackend
	write bool
	// beginSQL starts the transaction, sent with its first query; begun says it was.
	beginSQL string
	begun    bool
	// locked is when the write lock was taken.
	locked time.Time
	// err is the first failure to talk to the database; the transaction is then lost.
	err          error
	cache        map[string]map[string]*pgEntry
	queueTouched bool
}

type pgEntry struct {
	value   []byte
	present bool
	dirty   bool
}

func (t *pgTx) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

func (t *pgTx) Writable() bool { return t.write }

func (t *pgTx) Bucket(name []byte) kvBucket {
	return &pgBucket{t: t, name: string(name), table: tableOf(name)}
}

func (t *pgTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	table := tableOf(name)
	if err := t.exec(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (key bytea PRIMARY KEY, value bytea NOT NULL)", table)); err != nil {
		return nil, err
	}
	if err := t.exec(fmt.Sprintf("CREATE SEQUENCE IF NOT EXISTS %s_seq", table)); err != nil {
		return nil, err
	}
	return t.Bucket(name), nil
}

func (t *pgTx) entry(bucket, key string) (*pgEntry, bool) {
	e, ok := t.cache[bucket][key]
	return e, ok
}

func (t *pgTx) set(bucket, key string, e *pgEntry) {
	if t.cache == nil {
		t.cache = map[string]map[string]*pgEntry{}
	}
	m := t.cache[bucket]
	if m == nil {
		m = map[string]*pgEntry{}
		t.cache[bucket] = m
	}
	m[key] = e
}

// dirtyOps are the statements that write what the transaction holds in memory, one upsert and
// one delete per table whatever the number of records (each statement costs PostgreSQL more
// than the rows it carries), and mark it written.
func (t *pgTx) dirtyOps() []func(*pgx.Batch) {
	var ops []func(*pgx.Batch)
	buckets := make([]string, 0, len(t.cache))
	for name := range t.cache {
		buckets = append(buckets, name)
	}
	sort.Strings(buckets)
	for _, name := range buckets {
		table := tableOf([]byte(name))
		var putKeys, putValues, delKeys [][]byte
		keys := make([]string, 0, len(t.cache[name]))
		for k, e := range t.cache[name] {
			if e.dirty {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			e := t.cache[name][k]
			if e.present {
				putKeys, putValues = append(putKeys, []byte(k)), append(putValues, e.value)
			} else {
				delKeys = append(delKeys, []byte(k))
			}
			e.dirty = false
		}
		if len(delKeys) > 0 {
			ops = append(ops, func(b *pgx.Batch) { b.Queue("DELETE FROM "+table+" WHERE key = ANY($1)", delKeys) })
		}
		if len(putKeys) > 0 {
			ops = append(ops, func(b *pgx.Batch) {
				b.Queue("INSERT INTO "+table+" (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (key) DO UPDATE SET value = excluded.value", putKeys, putValues)
			})
		}
	}
	return ops
}

// flush sends the writes held in memory, in one round trip, before a range is read.
func (t *pgTx) flush() error {
	ops := t.dirtyOps()
	if len(ops) == 0 {
		return t.err
	}
	br, err := t.send(func(b *pgx.Batch) {
		for _, op := range ops {
			op(b)
		}
	})
	if err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		t.fail(err)
		return err
	}
	return nil
}

// bucketKey names one record.
type bucketKey struct {
	bucket []byte
	key    string
}

// prefetch reads the records keys name that the transaction has not read yet, in one round
// trip, so that the Gets that follow are answered from memory.
func (t *pgTx) prefetch(keys []bucketKey) {
	byBucket := map[string][][]byte{}
	var order []string
	for _, k := range keys {
		name := string(k.bucket)
		if _, seen := t.entry(name, k.key); seen {
			continue
		}
		if _, ok := byBucket[name]; !ok {
			order = append(order, name)
		}
		byBucket[name] = append(byBucket[name], []byte(k.key))
		t.set(name, k.key, &pgEntry{}) // absent unless a row says otherwise
	}
	if len(order) == 0 {
		return
	}
	br, err := t.send(func(b *pgx.Batch) {
		for _, name := range order {
			b.Queue("SELECT key, value FROM "+tableOf([]byte(name))+" WHERE key = ANY($1)", byBucket[name])
		}
	})
	if err != nil {
		return
	}
	defer br.Close()
	for _, name := range order {
		rows, err := br.Query()
		if err != nil {
			t.fail(err)
			return
		}
		for rows.Next() {
			var k, v []byte
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				t.fail(err)
				return
			}
			if v == nil {
				v = []byte{}
			}
			t.set(name, string(k), &pgEntry{value: v, present: true})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.fail(err)
			return
		}
	}
}

type pgBucket struct {
	t     *pgTx
	name  string
	table string
}

func (b *pgBucket) Get(key []byte) []byte {
	if e, ok := b.t.entry(b.name, string(key)); ok {
		if !e.present {
			return nil
		}
		return e.value
	}
	if b.t.err != nil {
		return nil
	}
	var v []byte
	br, err := b.t.send(func(bt *pgx.Batch) { bt.Queue("SELECT value FROM "+b.table+" WHERE key = $1", key) })
	if err != nil {
		return nil
	}
	err = br.QueryRow().Scan(&v)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		b.t.set(b.name, string(key), &pgEntry{})
		return nil
	case err != nil:
		b.t.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{}
	}
	b.t.set(b.name, string(key), &pgEntry{value: v, present: true})
	return v
}

func (b *pgBucket) Put(key, value []byte) error {
	if !b.t.write {
		return errors.New("store: write in a read-only transaction")
	}
	v := make([]byte, len(value))
	copy(v, value)
	b.t.set(b.name, string(key), &pgEntry{value: v, present: true, dirty: true})
	if b.name == string(bucketQueue) {
		b.t.queueTouched = true
	}
	return b.t.err
}

func (b *pgBucket) Delete(key []byte) error {
	if !b.t.write {
		return errors.New("store: write in a read-only transaction")
	}
	b.t.set(b.name, string(key), &pgEntry{dirty: true})
	return b.t.err
}

func (b *pgBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *pgBucket) Sequence() uint64 {
	var last int64
	var called bool
	br, err := b.t.send(func(bt *pgx.Batch) { bt.Queue("SELECT last_value, is_called FROM " + b.table + "_seq") })
	if err != nil {
		return 0
	}
	err = br.QueryRow().Scan(&last, &called)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		b.t.fail(err)
		return 0
	}
	if !called {
		return 0
	}
	return uint64(last)
}

func (b *pgBucket) SetSequence(v uint64) error {
	if v == 0 {
		return b.t.exec("SELECT setval($1::regclass, 1, false)", b.table+"_seq")
	}
	return b.t.exec("SELECT setval($1::regclass, $2, true)", b.table+"_seq", int64(v))
}

func (b *pgBucket) Cursor() kvCursor {
	if b.t.write {
		// The table must hold this transaction's writes before a range of it is read.
		b.t.flush()
	}
	return &pgCursor{b: b}
}

// pgCursor reads a table in pages, growing from a few rows (most walks are short: a ticket's
// items, a page of a list) to a few hundred.
type pgCursor struct {
	b    *pgBucket
	rows []pgRow
	i    int
	// forward is the direction the page was read in; more, whether the table may hold rows
	// past the page in that direction.
	forward bool
	more    bool
	size    int
}

type pgRow struct{ k, v []byte }

const firstPage, maxPage = 16, 256

func (c *pgCursor) load(where string, arg []byte, forward bool) ([]byte, []byte) {
	if c.size == 0 || c.forward != forward {
		c.size = firstPage
	} else if c.size < maxPage {
		c.size *= 2
	}
	order := "ASC"
	if !forward {
		order = "DESC"
	}
	q := "SELECT key, value FROM " + c.b.table + " " + where + " ORDER BY key " + order + fmt.Sprintf(" LIMIT %d", c.size)
	var args []any
	if where != "" {
		args = append(args, arg)
	}
	c.rows, c.i, c.forward = c.rows[:0], 0, forward
	if c.b.t.err != nil {
		return nil, nil
	}
	br, err := c.b.t.send(func(b *pgx.Batch) { b.Queue(q, args...) })
	if err != nil {
		return nil, nil
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		c.b.t.fail(err)
		return nil, nil
	}
	for rows.Next() {
		var r pgRow
		if err := rows.Scan(&r.k, &r.v); err != nil {
			c.b.t.fail(err)
			rows.Close()
			return nil, nil
		}
		if r.v == nil {
			r.v = []byte{}
		}
		c.rows = append(c.rows, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		c.b.t.fail(err)
		return nil, nil
	}
	c.more = len(c.rows) == c.size
	return c.at()
}

func (c *pgCursor) at() ([]byte, []byte) {
	if c.i >= len(c.rows) {
		return nil, nil
	}
	return c.rows[c.i].k, c.rows[c.i].v
}

// current is the key the cursor stands on, nil when it ran off an end.
func (c *pgCursor) current() []byte {
	if c.i < len(c.rows) {
		return c.rows[c.i].k
	}
	return nil
}

func (c *pgCursor) First() ([]byte, []byte) { c.size = 0; return c.load("", nil, true) }
func (c *pgCursor) Last() ([]byte, []byte)  { c.size = 0; return c.load("", nil, false) }

func (c *pgCursor) Seek(key []byte) ([]byte, []byte) {
	c.size = 0
	return c.load("WHERE key >= $1", key, true)
}

func (c *pgCursor) Next() ([]byte, []byte) { return c.step(true) }
func (c *pgCursor) Prev() ([]byte, []byte) { return c.step(false) }

func (c *pgCursor) step(forward bool) ([]byte, []byte) {
	cur := c.current()
	if cur == nil {
		return nil, nil
	}
	if c.forward == forward {
		if c.i+1 < len(c.rows) {
			c.i++
			return c.at()
		}
		if !c.more {
			c.i = len(c.rows)
			return nil, nil
		}
	}
	cur = append([]byte(nil), cur...)
	if forward {
		return c.load("WHERE key > $1", cur, true)
	}
	return c.load("WHERE key < $1", cur, false)
}

// Claims and the queue's wake-ups.

// claim leases to this node those of ids no other live node holds.
func (b *pgBackend) claim(ids []uint64) ([]uint64, error) {
	if len(ids) == 0 {
		return ids, nil
	}
	list := make([]int64, len(ids))
	for i, id := range ids {
		list[i] = int64(id)
	}
	ctx, cancel := opContext()
	defer cancel()
	rows, err := b.aux.Query(ctx, `
		INSERT INTO deskgate_leases (delivery, node, until)
		SELECT unnest($1::bigint[]), $2, now() + $3::interval
		ON CONFLICT (delivery) DO UPDATE SET node = excluded.node, until = excluded.until
		WHERE deskgate_leases.until < now() OR deskgate_leases.node = excluded.node
		RETURNING delivery`, list, b.node, leaseTime.String())
	if err != nil {
		return nil, unavailable(err)
	}
	won, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]uint64, len(won))
	b.mu.Lock()
	for i, id := range won {
		out[i] = uint64(id)
		b.held[uint64(id)] = true
	}
	b.mu.Unlock()
	return out, nil
}

func (b *pgBackend) release(ids []uint64) {
	if len(ids) == 0 {
		return
	}
	list := make([]int64, len(ids))
	b.mu.Lock()
	for i, id := range ids {
		list[i] = int64(id)
		delete(b.held, id)
	}
	b.mu.Unlock()
	// Should this fail, the lease runs out by itself: renew keeps only what is held.
	ctx, cancel := opContext()
	defer cancel()
	b.aux.Exec(ctx, "DELETE FROM deskgate_leases WHERE node = $1 AND delivery = ANY($2::bigint[])", b.node, list)
}

func (b *pgBackend) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.aux.Exec(ctx, "DELETE FROM deskgate_leases WHERE node = $1", b.node)
}

// renew keeps this node's leases while it lives, and clears leases that ran out long ago.
func (b *pgBackend) renew(ctx context.Context) {
	defer b.stopped.Done()
	t := time.NewTicker(leaseTime / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		list := make([]int64, 0, len(b.held))
		for id := range b.held {
			list = append(list, int64(id))
		}
		b.mu.Unlock()
		if len(list) > 0 {
			b.aux.Exec(ctx, "UPDATE deskgate_leases SET until = now() + $3::interval WHERE node = $1 AND delivery = ANY($2::bigint[])", b.node, list, leaseTime.String())
		}
		b.aux.Exec(ctx, "DELETE FROM deskgate_leases WHERE until < now() - interval '1 hour'")
		b.aux.Exec(ctx, "DELETE FROM deskgate_sender_hits WHERE minute < now() - interval '2 hours'")
	}
}

// onQueueChange sets what listen calls on each NOTIFY, from this node's commits too.
func (b *pgBackend) onQueueChange(fn func()) {
	b.mu.Lock()
	b.onQueue = fn
	b.mu.Unlock()
}

func (b *pgBackend) queueChanged() {
	b.mu.Lock()
	fn := b.onQueue
	b.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// listen waits for NOTIFY on the queue's channel on a connection of its own, and makes a new
// one when it breaks (a restart of PostgreSQL); after a break it calls the callback once, for
// the notices it may have missed.
func (b *pgBackend) listen(ctx context.Context) {
	defer b.stopped.Done()
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, b.conn)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgQueueChannel)
			if err == nil {
				b.queueChanged()
			}
			for err == nil {
				_, err = conn.WaitForNotification(ctx)
				if err == nil {
					b.queueChanged()
				}
			}
			conn.Close(context.Background())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// noteSender counts in deskgate_sender_hits, which every node shares. Two nodes may both
// admit a mail that only one of them would have: the count is read, then written.
func (b *pgBackend) noteSender(sender string, now time.Time, admit func(hits int) bool) error {
	n, err := b.senderHits(sender, now)
	if err != nil || !admit(n) {
		return err
	}
	return b.countSender(sender, now)
}

// senderHits is how many mails from sender every node counted in the hour before now.
func (b *pgBackend) senderHits(sender string, now time.Time) (n int, err error) {
	ctx, cancel := opContext()
	defer cancel()
	err = b.aux.QueryRow(ctx,
		"SELECT coalesce(sum(hits), 0) FROM deskgate_sender_hits WHERE sender = $1 AND minute > $2::timestamptz - interval '1 hour'",
		sender, now.UTC()).Scan(&n)
	return n, unavailable(err)
}

// countSender counts one mail from sender at now, in its minute's row.
func (b *pgBackend) countSender(sender string, now time.Time) error {
	ctx, cancel := opContext()
	defer cancel()
	_, err := b.aux.Exec(ctx, `INSERT INTO deskgate_sender_hits (sender, minute, hits)
		VALUES ($1, date_trunc('minute', $2::timestamptz), 1)
		ON CONFLICT (sender, minute) DO UPDATE SET hits = deskgate_sender_hits.hits + 1`, sender, now.UTC())
	return unavailable(err)
}

// forgetSender does nothing: the counts are rows, not memory, and renew drops them two hours
// after their minute.
func (b *pgBackend) forgetSender(sender string) {
	// An erased person's address must not stay in the count for the hour it would last; a
	// failure here leaves it to expire with its minute.
	ctx, cancel := opContext()
	defer cancel()
	b.aux.Exec(ctx, "DELETE FROM deskgate_sender_hits WHERE sender = $1", sender)
}

// ping asks a connection of the pool.
func (b *pgBackend) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return unavailable(b.pool.Ping(ctx))
}

// wedged is never: a database that does not answer is not this process's fault and a restart
// would not mend it; the daemon answers 451 meanwhile and reconnects by itself.
func (b *pgBackend) wedged() error { return nil }

// backup is PostgreSQL's own tools' (pg_dump, base backups).
func (b *pgBackend) backup(io.Writer) (int64, error) { return 0, ErrBackupElsewhere }

func (b *pgBackend) where() string { return b.redacted }
