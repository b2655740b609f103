package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// A mail with 5,000 Cc on a new ticket: mailparse reads the first 1,000, the ticket takes 48
// (limits.max_ccs), and explain says so in one C8 step and one C1 step, with the counts; the
// printed trace does not grow with the mail. 5,000 addresses are a Cc header of about 105 kB,
// well inside the 1 MiB header limit and limits.max_message_bytes (25 MiB).
func TestC8_ExplainOfA5000CcMail(t *testing.T) {
	d := startDaemon(t, options{})
	var cc []string
	for i := 0; i < 5000; i++ {
		cc = append(cc, fmt.Sprintf("u%04d@customer.test", i))
	}
	msg := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com",
		"Cc": strings.Join(cc, ",\r\n "), "Subject": "everybody", "Message-ID": "<cc5000@customer.test>"}, "Hello all.\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
		t.Fatalf("%d-byte mail refused: %v", len(msg), err)
	}
	tk := d.ticket(d.tickets()[0].ID)
	if len(tk.CCs) != 48 {
		t.Fatalf("%d CCs, want 48", len(tk.CCs))
	}
	out, stderr, code := d.cli("explain", fmt.Sprint(tk.Comments[0].ID))
	if code != 0 {
		t.Fatalf("explain: %d %s", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	c8 := regexp.MustCompile(`(?m)^  C8 +952 CCs not added +the ticket has limits\.max_ccs=48 CCs: u0048@customer\.test, .* and 947 more$`)
	c1 := regexp.MustCompile(`(?m)^  C1 +4000 names not read +To/Cc name more addresses than deskgate reads \(the first 1000 of each header\)`)
	if !c8.MatchString(out) || !c1.MatchString(out) {
		t.Errorf("explain does not count what it left out:\n%s", out)
	}
	if n := strings.Count(out, "  C8 "); n != 1 {
		t.Errorf("%d C8 lines, want 1", n)
	}
	// 48 CCs added, and the few steps around them; nothing per address left out.
	if len(lines) > 70 {
		t.Errorf("explain printed %d lines for one mail", len(lines))
	}
	for _, l := range lines {
		if strings.Count(l, "@") > 6 {
			t.Errorf("a line names %d addresses: %.200s", strings.Count(l, "@"), l)
		}
	}
	// The JSON form carries the same steps.
	var e struct {
		By    string `json:"by"`
		Trace []struct{ Rule, Step, Detail string }
	}
	raw, _, _ := d.cli("explain", "--json", fmt.Sprint(tk.Comments[0].ID))
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, s := range e.Trace {
		steps = append(steps, s.Rule+" "+s.Step)
	}
	joined := strings.Join(steps, "\n")
	if e.By != "jane@customer.test" || !strings.Contains(joined, "C8 952 CCs not added") || !strings.Contains(joined, "C1 4000 names not read") {
		t.Errorf("explain --json: by %q, steps:\n%s", e.By, joined)
	}
}

// An expert action is named the same way in the heading of explain, in its steps and in
// tickets show: by the expert's address when the request named one, else "an expert (admin
// API)"; never "-".
func TestC6_ExplainNamesTheExpertOneWay(t *testing.T) {
	d := startDaemon(t, options{})
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "who"}, "hi\n")); err != nil {
		t.Fatal(err)
	}
	id := d.tickets()[0].ID
	if out, stderr, code := d.cli("cc", "add", fmt.Sprint(id), "kim@customer.test"); code != 0 {
		t.Fatalf("cc add: %s %s", out, stderr)
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/api/v1/tickets/%d/ccs", d.adminAddr, id), strings.NewReader(`{"email": "lee@customer.test"}`))
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("X-Deskgate-Expert", "alice@example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 && resp.StatusCode != 200 {
		t.Fatalf("POST ccs with X-Deskgate-Expert: %v %v", err, resp)
	}
	resp.Body.Close()
	var tk struct {
		Events []struct {
			ID     uint64 `json:"id"`
			Detail string `json:"detail"`
		} `json:"events"`
	}
	d.getJSON(fmt.Sprintf("/api/v1/tickets/%d", id), &tk)
	if len(tk.Events) != 2 {
		t.Fatalf("%d events, want 2", len(tk.Events))
	}
	show, _, _ := d.cli("tickets", "show", fmt.Sprint(id))
	for _, ev := range tk.Events {
		who := "an expert (admin API)"
		if ev.Detail == "lee@customer.test" {
			who = "alice@example.com"
		}
		out, _, _ := d.cli("explain", fmt.Sprint(ev.ID))
		heading := fmt.Sprintf("Event %d on ticket %d: cc_add by %s\n", ev.ID, id, who)
		if !strings.HasPrefix(out, heading) || !strings.Contains(out, ev.Detail+" by "+who) || strings.Contains(out, "by -") {
			t.Errorf("explain of event %d:\n%s\nwant the heading %q and the step naming %s", ev.ID, out, heading, who)
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^Event %d: .* cc_add %s by %s, told`, ev.ID, regexp.QuoteMeta(ev.Detail), regexp.QuoteMeta(who))).MatchString(show) {
			t.Errorf("tickets show does not name %s for event %d:\n%s", who, ev.ID, show)
		}
		var e struct {
			By string `json:"by"`
		}
		d.getJSON(fmt.Sprintf("/api/v1/explain/%d", ev.ID), &e)
		if e.By != who {
			t.Errorf("explain JSON by = %q, want %q", e.By, who)
		}
	}
}

// A third party's Cc names are counted in an X1 step.
func TestX1_ExplainCountsTheThirdPartysNames(t *testing.T) {
	d := startDaemon(t, options{})
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "fwd"}, "hi\n")); err != nil {
		t.Fatal(err)
	}
	tk := d.ticket(d.tickets()[0].ID)
	if err := sendSMTP(d.smtpAddr, "vendor@else.test", []string{tk.ReplyAddress},
		mail(map[string]string{"From": "vendor@else.test", "To": tk.ReplyAddress, "Cc": "jane@customer.test, x@else.test, y@else.test", "Subject": "Re: fwd"}, "an answer\n")); err != nil {
		t.Fatal(err)
	}
	tk = d.ticket(tk.ID)
	if len(tk.Comments) != 2 || !tk.Comments[1].ThirdParty || len(tk.CCs) != 0 {
		t.Fatalf("third party: %+v, CCs %v", tk.Comments, tk.CCs)
	}
	out, _, _ := d.cli("explain", fmt.Sprint(tk.Comments[1].ID))
	if !regexp.MustCompile(`(?m)^  X1 +2 CCs not added +a third party adds nobody until an expert makes them a CC: x@else\.test, y@else\.test$`).MatchString(out) {
		t.Errorf("explain does not count the names a third party named:\n%s", out)
	}
}
