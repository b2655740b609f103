package inbound

import "sync"

// memoryBudget bounds the message data that all sessions hold at once
// (limits.max_data_memory). A session reserves as its message grows and gives everything back
// when the message is answered; a reservation that does not fit is refused rather than waited
// for, so no session waits on another and the client is told to come back (452 4.3.1).
type memoryBudget struct {
	mu   sync.Mutex
	used int64
	max  func() int64
}

func (b *memoryBudget) reserve(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max() {
		return false
	}
	b.used += n
	return true
}

func (b *memoryBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}
