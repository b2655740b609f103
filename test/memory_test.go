package test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// peakRSS is the daemon's VmHWM, its resident set at its highest, in MiB.
func (d *daemon) peakRSS(t *testing.T) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// Twenty 20 MiB messages at once: the data the sessions hold is bounded by
// limits.max_data_memory, so the daemon's memory stays bounded too; what does not fit is told
// 452 4.3.1 and comes again, as MTAs do.
func TestTwentyLargeMessagesAtOnceStayWithinMemory(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "limits: {max_message_bytes: 25MiB, max_data_memory: 128MiB}"})
	attachment := base64.StdEncoding.EncodeToString(make([]byte, 15<<20))
	var body strings.Builder
	body.WriteString("From: big@customer.test\r\nTo: support@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n" +
		"Content-Type: application/octet-stream; name=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for i := 0; i < len(attachment); i += 76 {
		body.WriteString(attachment[i:min(i+76, len(attachment))] + "\r\n")
	}
	body.WriteString("--b--\r\n")
	msg := body.String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	replies := map[string]int{}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half declare their size, as MTAs do, and are turned away at MAIL when it does not fit.
			_, reply, _ := deliverRaw(d.smtpAddr, []byte(strings.Replace(msg, "Subject: big", fmt.Sprintf("Subject: big %d", i), 1)), i%2 == 0)
			mu.Lock()
			replies[reply[:min(9, len(reply))]]++
			if strings.HasPrefix(reply, "452") && !strings.Contains(reply, "storage") {
				t.Errorf("a 452 that is not about storage: %q", reply)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	peak := d.peakRSS(t)
	t.Logf("replies %v; peak RSS %d MiB", replies, peak)
	for r := range replies {
		if r != "250 2.0.0" && r != "452 4.3.1" {
			t.Errorf("a reply that is neither a 250 nor 452 4.3.1: %q", r)
		}
	}
	if replies["250 2.0.0"] == 0 {
		t.Errorf("no message got in")
	}
	switch {
	case os.Getenv("E2E_RACE") != "":
		// The race detector keeps shadow memory for every byte the daemon touches, several
		// times the message data itself; the bound is for the real binary.
		t.Logf("E2E_RACE: peak RSS not checked against the bound (%d MiB)", peak)
	case peak > 600:
		t.Errorf("peak RSS %d MiB with max_data_memory 128MiB, want under 600", peak)
	}
}

// A client that declares a large SIZE and then sends nothing holds no memory: the sizes are
// checked at MAIL, and only bytes that arrive are reserved. Otherwise a few idle sessions
// would keep everybody else at 452.
func TestDeclaredSizesHoldNoMemory(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "limits: {max_message_bytes: 25MiB, max_data_memory: 50MiB}"})
	for i := 0; i < 3; i++ {
		idle := dial(t, d.smtpAddr, "127.0.0.5")
		idle.expect("", "220 ")
		idle.expect("EHLO idle.example", "250")
		idle.expect(fmt.Sprintf("MAIL FROM:<idle@customer.test> SIZE=%d", 25<<20), "250")
	}
	err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "Subject": "small"}, "hello\n"))
	if err != nil {
		t.Fatalf("a small message while idle sessions declared 75 MiB: %v", err)
	}
}
