package main

import "testing"

// A list of people reads as the people it has: a comma in a name is quoted, and a name that
// looks like an address is not shown at all.
func TestPersonInAList(t *testing.T) {
	for _, c := range []struct{ name, email, want string }{
		{"Zoë", "zoë@example.net", "Zoë <zoë@example.net>"},
		{"Ünal, Zoë", "zoë@example.net", `"Ünal, Zoë" <zoë@example.net>`},
		{`Say "hi"`, "a@b.test", `"Say \"hi\"" <a@b.test>`},
		{"boss@example.com", "eve@evil.test", "eve@evil.test"},
	} {
		if got := person(c.name, c.email); got != c.want {
			t.Errorf("person(%q, %q) = %q, want %q", c.name, c.email, got, c.want)
		}
	}
}
