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

// fits says whether n could be reserved now, without reserving it.
func (b *memoryBudget) fits(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used+n <= b.max()
}

func (b *memoryBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// usedPercent is how much of the budget is taken, from 0 to 100.
func (b *memoryBudget) usedPercent() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.max(); m > 0 {
		return b.used * 100 / m
	}
	return 100
}
