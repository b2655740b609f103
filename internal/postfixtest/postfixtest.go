// Package postfixtest holds what the end-to-end tests and the benchmark need to run a private
// Postfix instance on loopback: its main.cf and the services of a relay-only Postfix.
package postfixtest

import "fmt"

// MasterCF is a master.cf for a Postfix that receives on smtpdListen (host:port) and relays
// or delivers by LMTP, with Postfix's default process limits. chroot is off so that the
// instance's directories can be anywhere; everything else is as Postfix ships it.
func MasterCF(smtpdListen string) string {
	return fmt.Sprintf(`%s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, smtpdListen)
}

// MainCF is the main.cf of a private instance whose configuration, queue and data are under
// dir: it listens on 127.0.0.1, relays for 127.0.0.0/8, delivers nothing locally, and logs to
// dir/maillog, as there may be no syslog daemon. Every performance setting is Postfix's
// default. Callers add what their instance is for.
func MainCF(dir string) string {
	return fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.deskgate.test
mydomain = deskgate.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
`, dir)
}
