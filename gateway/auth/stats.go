package auth

import (
	"sort"
	"sync"
)

// Stats counts authentication results by mode and outcome, for /metrics.
type Stats struct {
	mu sync.Mutex
	m  map[[3]string]int64
}

// Add counts one mail: family is "result" (the mode's deciding result) or "agent_claim"
// (proven, spoofed, deferred).
func (s *Stats) Add(family, mode, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[3]string]int64{}
	}
	s.m[[3]string{family, mode, outcome}]++
}

// Each calls f for every count, in a stable order.
func (s *Stats) Each(f func(family, mode, outcome string, n int64)) {
	s.mu.Lock()
	keys := make([][3]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	counts := make(map[[3]string]int64, len(s.m))
	for k, v := range s.m {
		counts[k] = v
	}
	s.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		for n := range a {
			if a[n] != b[n] {
				return a[n] < b[n]
			}
		}
		return false
	})
	for _, k := range keys {
		f(k[0], k[1], k[2], counts[k])
	}
}
