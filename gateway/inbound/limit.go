package inbound

import (
	"net"
	"sync"
)

// sessionLimiter caps concurrent SMTP and LMTP sessions together (limits.max_sessions).
// A connection over the cap is told 421 and closed at once, as Postfix's smtpd does
// when it runs out of processes, so the client retries later instead of hanging.
type sessionLimiter struct {
	mu     sync.Mutex
	active int
	max    func() int
}

func (l *sessionLimiter) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active >= l.max() {
		return false
	}
	l.active++
	return true
}

func (l *sessionLimiter) release() {
	l.mu.Lock()
	l.active--
	l.mu.Unlock()
}

// Active is the number of sessions open now.
func (l *sessionLimiter) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

type limitedListener struct {
	net.Listener
	limiter  *sessionLimiter
	onRefuse func(net.Conn)
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.limiter.acquire() {
			return &limitedConn{Conn: c, release: ll.limiter.release}, nil
		}
		go ll.onRefuse(c)
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
