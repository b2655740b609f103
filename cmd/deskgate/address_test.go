package main

import (
	"testing"

	"github.com/deskgate/deskgate/gateway/admin"
)

// The CLI reports a person it added as deskgate keeps the address, whatever form was typed,
// and knows an agent added as a CC in any form of the agent's address.
func TestAddedAsPrintsTheCanonicalAddress(t *testing.T) {
	if got := addedAs("jöe@XN--BCHER-KVA.TEST", "CC", 7)(admin.TicketView{}); got != "jöe@bücher.test is now a CC of ticket 7" {
		t.Errorf("got %q", got)
	}
	view := admin.TicketView{Followers: []admin.Person{{Email: "jürgen@bücher.test"}}}
	if got := addedAs("JÜRGEN@xn--bcher-kva.test", "CC", 7)(view); got != "JÜRGEN@bücher.test is an agent: now a hidden follower of ticket 7, not a CC (policy.agent_cc_becomes_follower)" {
		t.Errorf("got %q", got)
	}
}
