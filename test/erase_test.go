package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

func TestTicketsDeleteAndEraseThroughTheCLI(t *testing.T) {
	d := startDaemon(t, options{})
	send := func(from, cc, id, extra string) {
		t.Helper()
		h := map[string]string{"From": from, "To": "support@example.com", "Subject": "Help from " + from, "Message-ID": "<" + id + ">"}
		if cc != "" {
			h["Cc"] = cc
		}
		if extra != "" {
			h["In-Reply-To"] = "<" + extra + ">"
		}
		if err := sendSMTP(d.smtpAddr, from, []string{"support@example.com"}, mail(h, "Regards, "+from)); err != nil {
			t.Fatal(err)
		}
	}
	send("jane@customer.test", "", "j1@customer.test", "")
	send("carol@customer.test", "Jane <jane@customer.test>", "c1@customer.test", "")
	send("jane@customer.test", "", "j2@customer.test", "c1@customer.test")
	send("dan@customer.test", "", "d1@customer.test", "")

	// Deleting: the CLI says what went, the API no longer has it, a second delete is a 404.
	// Jane's second mail answered carol's, so dan's is ticket 3.
	out, errOut, code := d.cli("tickets", "delete", "3")
	if code != 0 || !strings.Contains(out, "ticket 3 deleted: 1 comments") {
		t.Fatalf("tickets delete 3: %d %q %q", code, out, errOut)
	}
	if status, _ := d.api("GET", "/api/v1/tickets/3", nil, true); status != 404 {
		t.Errorf("a deleted ticket answers %d", status)
	}
	if status, body := d.api("DELETE", "/api/v1/tickets/3", nil, true); status != 404 || !strings.Contains(string(body), "does not exist") {
		t.Errorf("deleting it again: %d %s", status, body)
	}
	if _, errOut, code := d.cli("tickets", "delete", "3"); code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("tickets delete of a deleted ticket: exit %d, %q", code, errOut)
	}

	// Erasing an agent is refused with the reason; a dry run lists and changes nothing.
	if _, errOut, code := d.cli("erase", "--address", "alice@example.com"); code == 0 || !strings.Contains(errOut, "agent") {
		t.Errorf("erase of an agent: exit %d, %q", code, errOut)
	}
	out, _, code = d.cli("erase", "--address", "jane@customer.test", "--dry-run")
	if code != 0 || !strings.Contains(out, "ticket 1: deleted (requester)") || !strings.Contains(out, "dry run") {
		t.Fatalf("erase --dry-run: %d %q", code, out)
	}
	if len(d.tickets()) != 2 {
		t.Fatal("a dry run changed the desk")
	}
	out, errOut, code = d.cli("erase", "--address", "JANE@customer.test")
	if code != 0 || !strings.Contains(out, "erased from 2 tickets") {
		t.Fatalf("erase: %d %q %q", code, out, errOut)
	}
	if status, _ := d.api("GET", "/api/v1/tickets/1", nil, true); status != 404 {
		t.Errorf("the ticket jane opened answers %d", status)
	}
	_, body := d.api("GET", "/api/v1/tickets/2", nil, true)
	if strings.Contains(strings.ToLower(string(body)), "jane") {
		t.Errorf("ticket 2 still shows jane: %s", body)
	}
	var tk ticket
	json.Unmarshal(body, &tk)
	if len(tk.Comments) != 2 || tk.Comments[1].Body != rules.ErasedText {
		t.Errorf("jane's reply on ticket 2 after the erasure: %+v", tk.Comments)
	}
	// Nothing jane wrote is in an original either.
	raw, _, _ := d.cli("comments", "raw", fmt.Sprint(tk.Comments[0].ID))
	if strings.Contains(strings.ToLower(raw), "jane@") {
		t.Errorf("carol's original mail still shows jane's address:\n%s", raw)
	}
	status, body := d.api("POST", "/api/v1/erase", strings.NewReader(`{"address": "jane@customer.test", "dry_run": true}`), true)
	var again struct {
		Tickets int      `json:"tickets"`
		Actions []string `json:"actions"`
	}
	json.Unmarshal(body, &again)
	if status != 200 || again.Tickets != 0 || again.Actions == nil {
		t.Errorf("erase again: %d %s, want nothing left to erase", status, body)
	}
}

// compact works offline only, and an interrupted one leaves the database as it was.
func TestCompactOfflineAndKilledHalfway(t *testing.T) {
	d := startDaemon(t, options{})
	if _, errOut, code := d.cli("compact"); code == 0 || !strings.Contains(errOut, "stop the deskgate daemon") {
		t.Fatalf("compact while the daemon runs: exit %d, %q", code, errOut)
	}
	for i := 0; i < 3; i++ {
		msg := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "s", "Message-ID": fmt.Sprintf("<k%d@customer.test>", i)}, "hi")
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	d.stop()

	// A database big enough that compacting takes a while: bulk tickets straight into the store.
	dataDir := filepath.Join(d.dir, "data")
	st, err := store.Open(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte(strings.Repeat("x", 64<<10))
	for batch := 0; batch < 40; batch++ {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			for i := 0; i < 100; i++ {
				tk := &model.Ticket{Subject: "bulk", Status: model.StatusSolved, Requester: model.Person{Email: "bulk@customer.test"}}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				c := &model.Comment{Author: "bulk@customer.test", Body: "b", Attachments: []model.Attachment{{Name: "a", Size: int64(len(blob))}}}
				if err := tx.AddComment(tk, c); err != nil {
					return err
				}
				if err := tx.PutAttachmentData(c.ID, 0, blob); err != nil {
					return err
				}
				if err := tx.PutTicket(tk); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	dbPath := filepath.Join(dataDir, store.FileName)
	before, _ := os.Stat(dbPath)

	cmd := exec.Command(binary, "--config", d.configPath, "compact")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the compaction to write its new file", 20*time.Second, func() bool {
		info, err := os.Stat(dbPath + ".compact")
		return err == nil && info.Size() > 1<<20
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	after, _ := os.Stat(dbPath)
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the database changed under a killed compaction: %d -> %d bytes", before.Size(), after.Size())
	}

	// Its leftover is cleared by the next run, which finishes, and the desk is whole.
	out, errOut, code := d.cli("compact")
	if code != 0 || !strings.Contains(out, "compacted") {
		t.Fatalf("compact after a killed one: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(dbPath + ".compact"); !os.IsNotExist(err) {
		t.Errorf("leftover file: %v", err)
	}
	d.start()
	if n := len(d.tickets()); n != 1000 {
		// the first page: the API lists at most 1000
		t.Errorf("%d tickets listed after compacting, want 1000 (of 4003)", n)
	}
	_, body := d.api("GET", "/api/v1/tickets/1", nil, true)
	if !strings.Contains(string(body), "k0@customer.test") {
		t.Errorf("ticket 1 after compacting: %s", body)
	}
}

// retention.delete_solved_after deletes solved tickets once they are that old, and only those.
func TestRetentionDeletesSolvedTickets(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "retention: {delete_solved_after: 2s}"})
	for i := 0; i < 2; i++ {
		msg := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "s", "Message-ID": fmt.Sprintf("<r%d@customer.test>", i)}, "hi")
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if _, errOut, code := d.cli("solve", "1"); code != 0 {
		t.Fatalf("solve 1: %s", errOut)
	}
	waitFor(t, "retention to delete the solved ticket", 10*time.Second, func() bool {
		status, _ := d.api("GET", "/api/v1/tickets/1", nil, true)
		return status == 404
	})
	if status, _ := d.api("GET", "/api/v1/tickets/2", nil, true); status != 200 {
		t.Errorf("the open ticket answers %d", status)
	}
	if !strings.Contains(d.logs.String(), "retention: solved tickets deleted") {
		t.Error("retention did not log what it deleted")
	}
}
