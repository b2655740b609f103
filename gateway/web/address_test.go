package web

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/config"
)

// An address typed in the desk in A-labels or another case is that person, stored and shown
// in the canonical form; one that is not valid is refused with the reason.
func TestDeskTakesAddressesCanonical(t *testing.T) {
	ts := newTestSite(t, nil)
	id := ts.receive("jane@customer.test", janeMail)
	alice := ts.session("alice@example.com")
	base := fmt.Sprintf("/tickets/%d", id)

	page := ts.follow(ts.postForm(base+"/ccs", "email="+url.QueryEscape("jöe@XN--BCHER-KVA.TEST"), alice), alice)
	tk, _ := ts.ticket(id)
	if len(tk.CCs) != 2 || tk.CCs[1].Email != "jöe@bücher.test" || !strings.Contains(page, "jöe@bücher.test added as CC") {
		t.Fatalf("CCs %+v after adding jöe@XN--BCHER-KVA.TEST", tk.CCs)
	}
	ts.follow(ts.postForm(base+"/ccs/remove", "email="+url.QueryEscape("JÖE@bücher.test"), alice), alice)
	if tk, _ := ts.ticket(id); len(tk.CCs) != 1 {
		t.Errorf("CCs %+v after removing JÖE@bücher.test", tk.CCs)
	}
	page = ts.follow(ts.postForm(base+"/ccs", "email="+url.QueryEscape("bob@xn--zz.test"), alice), alice)
	if !strings.Contains(page, "is not a valid email address: the domain of") {
		t.Errorf("no reason for an invalid address:\n%s", page)
	}
	if tk, _ := ts.ticket(id); len(tk.CCs) != 1 {
		t.Errorf("an invalid address was added: %+v", tk.CCs)
	}
}

// An agent with an internationalised address gets a sign-in link for any form of it, and the
// forms share one hourly count.
func TestSignInByAnyFormOfTheAddress(t *testing.T) {
	ts := newTestSite(t, func(c *config.Config) {
		c.Agents = append(c.Agents, config.Agent{Email: "jürgen@bücher.test", Name: "Jürgen", Role: config.RoleAgent})
	})
	for _, form := range []string{"jürgen@xn--bcher-kva.test", "JÜRGEN@BÜCHER.TEST", "jürgen@bücher.test", "ju\u0308rgen@bücher.test", "Jürgen@XN--BCHER-KVA.test", "jürgen@bücher.test"} {
		askLink(ts, url.QueryEscape(form))
	}
	to, _ := ts.signInMails()
	if len(to) != 5 {
		t.Fatalf("%d sign-in mails for six asks in six forms, want 5 (the hourly limit)", len(to))
	}
	for _, a := range to {
		if a != "jürgen@bücher.test" {
			t.Errorf("a sign-in link went to %q, want jürgen@bücher.test", a)
		}
	}
}
