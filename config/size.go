package config

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes, written in the config as a number or with a unit ("25MiB").
type ByteSize int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	// Longest suffixes first so that "MiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// ParseByteSize reads "1048576", "512KiB", "25MiB", "1GB" (SI units are powers of ten,
// binary units and bare K/M/G powers of two, as Postfix and most operators read them).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	factor := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			factor = u.factor
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (use bytes or a unit such as 25MiB)", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	if n > (1<<62)/factor {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n * factor), nil
}

func (b ByteSize) String() string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return strconv.FormatInt(int64(b), 10)
}
