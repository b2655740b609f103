package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// chainOf is n transactions of one recipient each, to rcpt-1@x.test, rcpt-2@x.test, ...
func chainOf(n int) []transaction {
	var trs []transaction
	for i := 1; i <= n; i++ {
		trs = append(trs, transaction{from: "b@example.com", rcpts: []string{fmt.Sprintf("rcpt-%d@x.test", i)}, index: []int{0},
			msg: []byte(fmt.Sprintf("Subject: %d\r\n\r\n.a dotted line of message %d\r\n", i, i))})
	}
	return trs
}

// Chained on a pipelining session without CHUNKING, n messages wait for the upstream n+1
// times, not 2n, and each arrives as DATA would have carried it on its own.
func TestChainSharesTheWaits(t *testing.T) {
	f, addr := startFake(t, []string{"PIPELINING", "8BITMIME"}, okAnswers)
	s, cc := dialFake(t, addr)
	out, usable := s.chain(chainOf(4))
	for k, errs := range out {
		if errs[0] != nil {
			t.Errorf("message %d: %v", k+1, errs[0])
		}
	}
	if !usable {
		t.Error("the session was dropped after a chain that went well")
	}
	_, roundTrips := cc.counts()
	if roundTrips != 5 {
		t.Errorf("4 chained messages took %d round trips, want 5 (8 one by one)", roundTrips)
	}
	lines, messages := f.seen()
	if len(messages) != 4 {
		t.Fatalf("the upstream got %d messages, want 4: %q", len(messages), lines)
	}
	for k, m := range messages {
		if want := fmt.Sprintf("Subject: %d\r\n\r\n.a dotted line of message %d\r\n", k+1, k+1); string(m) != want {
			t.Errorf("message %d arrived as %q, want %q", k+1, m, want)
		}
	}
}

// Each transaction of a chain is judged on its own: a refused message or recipient does not
// touch the others, and a transaction refused before its message is followed by RSET.
func TestChainJudgesEachTransaction(t *testing.T) {
	noRecipient := false
	f, addr := startFake(t, []string{"PIPELINING"}, func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "MAIL"):
			noRecipient = false
		case strings.Contains(cmd, "rcpt-2@"):
			noRecipient = true
			return "550 5.1.1 no such user"
		case cmd == "DATA" && noRecipient:
			return "554 5.5.1 no valid recipients"
		}
		return okAnswers(cmd)
	})
	s, _ := dialFake(t, addr)
	out, usable := s.chain(chainOf(3))
	if out[0][0] != nil || out[2][0] != nil {
		t.Errorf("messages 1 and 3: %v, %v; want both delivered", out[0][0], out[2][0])
	}
	if code(out[1][0]) != 550 {
		t.Errorf("message 2, its recipient refused: %v, want the 550", out[1][0])
	}
	if !usable {
		t.Error("the session was dropped")
	}
	lines, messages := f.seen()
	if len(messages) != 2 || !strings.Contains(strings.Join(lines, "\n"), "RSET") {
		t.Errorf("the upstream got %d messages and %q; want 2 messages and an RSET after the refused one", len(messages), lines)
	}
}

// A message whose end is refused fails on its own; the next, already announced, still goes.
func TestChainRefusedMessageLeavesTheNext(t *testing.T) {
	_, addr := startFake(t, []string{"PIPELINING"}, answerNth(".", 1, "554 5.7.1 rejected by content filter"))
	s, _ := dialFake(t, addr)
	out, usable := s.chain(chainOf(2))
	if code(out[0][0]) != 554 || out[1][0] != nil || !usable {
		t.Errorf("got %v, %v, usable %v; want the 554 for the first, the second delivered", out[0][0], out[1][0], usable)
	}
}

// When the upstream drops the session at a message's end (421), that message and every one
// after it are left to be tried again, none counted as sent, and the session is not reused.
func TestChainCutByA421LeavesTheRestToRetry(t *testing.T) {
	_, addr := startFake(t, []string{"PIPELINING"}, answerNth(".", 2, "421 4.3.0 going down"))
	s, _ := dialFake(t, addr)
	out, usable := s.chain(chainOf(4))
	if out[0][0] != nil {
		t.Errorf("message 1, answered 250 before the 421: %v", out[0][0])
	}
	if code(out[1][0]) != 421 {
		t.Errorf("message 2: %v, want the 421", out[1][0])
	}
	for k := 2; k < 4; k++ {
		if out[k][0] == nil || permanent(out[k][0]) || !errors.Is(out[k][0], errChainCut) {
			t.Errorf("message %d, whose turn never came: %v; want it left to be tried again", k+1, out[k][0])
		}
	}
	if usable {
		t.Error("the session was kept after a 421")
	}
}

// A chained message goes out as the octets DATA's dot writer sends, stuffing and final dot
// included, whatever its line breaks.
func TestChainedMessageIsWhatTheDotWriterSends(t *testing.T) {
	for _, msg := range []string{
		dotty,
		"no final break",
		"lone\nline feeds\n.dot after LF\n",
		"ends in a CR\r",
		"CR CR LF\r\r\n.x\r\n",
		"",
		".",
		"..\r\n.\r\n",
	} {
		var want, got bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write([]byte(msg))
		dw.Close()
		s := &session{w: bufio.NewWriter(&got)}
		if err := s.message([]byte(msg), nil); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%q went out as %q; DATA's dot writer sends %q", msg, got.String(), want.String())
		}
	}
}

// A 3xx to DATA with no recipient accepted, 354 or another, may have put the upstream in DATA
// mode: nothing more is written into it (an RSET there would be message text), and the
// session is dropped. Over DATA alone and in a chain.
func TestThreeHundredToDATAWithoutRecipientsEndsTheSession(t *testing.T) {
	answer := func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "RCPT"):
			return "550 5.1.1 no such user"
		case cmd == "DATA":
			return "334 go ahead"
		}
		return okAnswers(cmd)
	}
	f, addr := startFake(t, []string{"PIPELINING"}, answer)
	s, _ := dialFake(t, addr)
	errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte("Subject: x\r\n\r\ny\r\n"), false)
	if code(errs[0]) != 550 || usable {
		t.Errorf("transact: %v, usable %v; want the 550 and the session dropped", errs[0], usable)
	}
	f2, addr2 := startFake(t, []string{"PIPELINING"}, answer)
	s2, _ := dialFake(t, addr2)
	out, usable := s2.chain(chainOf(2))
	if code(out[0][0]) != 550 || out[1][0] == nil || usable {
		t.Errorf("chain: %v, %v, usable %v; want the 550, the second left to retry, the session dropped", out[0][0], out[1][0], usable)
	}
	for _, fake := range []*fakeUpstream{f, f2} {
		if lines, _ := fake.seen(); strings.Contains(strings.Join(lines, "\n"), "RSET") {
			t.Errorf("an RSET was written after a 3xx to DATA: %q", lines)
		}
	}
}

// Over an upstream that offers CHUNKING, a chain goes as one BDAT transaction after another on
// one session; once a 421 ends the session, the deliveries after it are left untried for the
// next pass, not sent on a session that is gone nor counted as attempts.
func TestChainOverCHUNKINGStopsAtALostSession(t *testing.T) {
	f, addr := startFake(t, []string{"PIPELINING", "CHUNKING"}, answerNth("BDAT", 2, "421 4.3.0 going down"))
	u := newUpstream(testConfig(t, addr, nil), nil, time.Now)
	defer u.Close()
	var es []Envelope
	for i := 1; i <= 3; i++ {
		es = append(es, Envelope{ID: uint64(i), From: "b@example.com", Rcpts: []string{fmt.Sprintf("rcpt-%d@x.test", i)},
			Msg: []byte(fmt.Sprintf("Subject: %d\r\n\r\nhi\r\n", i))})
	}
	out := u.DeliverChain(es)
	if out[0][0] != nil || code(out[1][0]) != 421 || !neverTried(out[2]) {
		t.Errorf("got %v, %v, %v; want delivered, the 421, untried", out[0][0], out[1][0], out[2][0])
	}
	if _, messages := f.seen(); len(messages) != 2 {
		t.Errorf("the upstream got %d chunks, want 2", len(messages))
	}
}
